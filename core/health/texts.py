"""Every sentence the health package posts or prints, in one place."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

# ---- check summaries --------------------------------------------------------------
DISK_OK = "{mount} is {percent:.1f} % full ({free} free)"
DISK_FULL = "{mount} is {percent:.1f} % full: {free} free of {total} (threshold {threshold:g} %)"
MEMORY_OK = "memory {percent:.1f} % used ({used} of {total})"
MEMORY_HIGH = "memory {percent:.1f} % used: {available} available of {total} (threshold {threshold:g} %)"
MEMORY_STALLED = "memory pressure: tasks stalled {pressure:.1f} % of the last minute (threshold {threshold:g} %)"
LOAD_WINDOW_OK = (
    "1-minute load did not stay above {limit:g} over the last {minutes:g} min (now {load1:.2f}; {cores} core(s))"
)
LOAD15_OK = "15-minute load average {load15:.2f} is not above {limit:g} (1-minute {load1:.2f}; {cores} core(s))"
LOAD_SUSTAINED = "load stayed above {limit:g} for {minutes:g} min (lowest {low:.2f}, now {load1:.2f}; {cores} core(s))"
LOAD15_HIGH = "15-minute load average {load15:.2f} is above {limit:g} (1-minute {load1:.2f}; {cores} core(s))"
DOCKER_OK = "Docker answers at {where}"
DOCKER_DOWN = "the Docker daemon at {where} does not answer: {error}"
DOCKER_NONE = "no Docker engine on this host (no DOCKER_HOST, no {where}): not checked"
DOCKER_REQUIRED = "no Docker engine found at {where}, and the check is set to required"
CONTAINER_OK = "container {name} is {status}"
CONTAINER_BAD = "container {name} ({image}): {problems}"
CONTAINER_UNHEALTHY = "healthcheck failing"
CONTAINER_RESTARTING = "restarting"
CONTAINER_LOOPING = "restarted {count} times, last start {ago} ago"
SYSTEMD_OK = "no failed systemd units"
SYSTEMD_NONE = "no systemd on this host: not checked"
SYSTEMD_FAILED = "systemd unit {unit} has failed ({state})"
CHECK_BROKEN = "the {name} check could not run: {error}"

# ---- incidents ----------------------------------------------------------------------
INCIDENT_TITLE = "🔴 Health check failing on {host}: {key}"
INCIDENT_OPENED = "Opened {at}."
INCIDENT_OPENED_AGENT = "Opened {at}. The agent looks into it in this thread."
INCIDENT_REOPENED = "🔴 Failing again: {summary}"
INCIDENT_RECOVERED = "✅ Recovered after {duration}: {summary}"
INCIDENT_FIXED = "✅ The fix held: {summary}"
RECOVERED_ON_ITS_OWN = "recovered on its own after {duration}"
RECHECK_PASSES = "✅ Re-check after the fix: {key} passes now. {summary}"
RECHECK_FAILS = "⚠️ Re-check after the fix: {key} is still failing. {summary}"
INCIDENT_PROMPT = (
    "A scheduled health check on {host} failed.\n"
    "Check: {key}\n"
    "What failed: {summary}\n"
    "Figures: {figures}\n\n"
    "Explain the likely cause using the read-only tools, then propose one concrete fix. "
    "If the fix changes anything, call the tool for it so a person can approve it; do not just describe it."
)

# ---- reports ------------------------------------------------------------------------
HEALTH_TITLE = "Health on {host}: {verdict}"
HEALTH_ALL_OK = "all {count} checks pass"
HEALTH_FAILING = "{failing} of {count} checks failing"
SUMMARY_MISSING = "_Summary missing: the model could not be reached ({error}). The figures and the chart are below._"
DAILY_TITLE = "Daily report for {host}: {start} → {end}"
NO_SAMPLES = "No metrics were sampled in this window (is the scheduler running?)."
NOTEBOOK_FALLBACK = "_The analysis notebook failed ({error}); the figures were computed without it._"

DAILY_SYSTEM_PROMPT = """\
You write the daily operations summary for a self-hosted server, for the people who run it.
Use only the figures you are given; never invent numbers. Write 4 to 8 short bullet points:
what stood out (peaks, disks filling up, busy processes), what changed against the previous days
(`anomalies`), the errors in the logs (`logs`), the incidents and what was done about them, the
actions people approved, and what to keep an eye on. Suggest an action only as a proposal:
nothing is done without approval. No preamble, no closing remarks."""
CHANGES_HEADER = "*What changed* (each hour against the same hour on the previous days)"
CHANGE_LINE = "• {metric} {day} {hour}: {value} against {usual} ± {spread} usually ({days} days), {direction}"
NO_CHANGES = "*What changed*: nothing out of the usual for the hours of the previous {days} days"
TOO_LITTLE_HISTORY = (
    "*What changed*: not enough history to compare with yet ({days} day(s) of samples before this window; "
    "{needed} needed)"
)


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def clock(ts: float, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return time.strftime(fmt, time.localtime(ts))


def figures_line(figures: Mapping[str, Any], limit: int = 1500) -> str:
    text = json.dumps(figures, ensure_ascii=False, default=str, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def figures_block(figures: Mapping[str, Any]) -> str:
    lines = []
    for name, value in figures.items():
        if isinstance(value, list | tuple) and value and isinstance(value[0], dict):
            shown = "; ".join(", ".join(f"{k} {v}" for k, v in item.items()) for item in value[:5])
        elif isinstance(value, dict):
            shown = ", ".join(f"{k} {v}" for k, v in value.items())
        else:
            shown = str(value)
        lines.append(f"• {name}: {shown}")
    return "\n".join(lines)


def incident_text(summary: str, figures: Mapping[str, Any], *, opened_at: float, agent: bool) -> str:
    opened = (INCIDENT_OPENED_AGENT if agent else INCIDENT_OPENED).format(at=clock(opened_at))
    return f"{summary}\n\n{figures_block(figures)}\n\n{opened}"


def health_text(results: Sequence[Any]) -> str:
    """One line per check result, failing ones first."""
    ordered = sorted(results, key=lambda r: (r.ok, r.key))
    lines = []
    for r in ordered:
        mark = "❔" if r.inconclusive else ("✅" if r.ok else "🔴")
        lines.append(f"{mark} `{r.key}`: {r.summary}")
    return "\n".join(lines) if lines else "no checks are enabled"


def _stat_line(label: str, stats: Mapping[str, Any], unit: str = " %") -> str:
    if not stats:
        return f"• {label}: no data"
    return f"• {label}: avg {stats['avg']}{unit}, peak {stats['peak']}{unit} at {stats['peak_at']}"


LOGS_HEADER = "*Logs* (errors and warnings in the window, by pattern; # is a number, <ip> an address, <id> an id)"
LOG_LINE = "• {count}× {level} [{source}] {pattern}"
LOG_EXAMPLE = "  e.g. {example}"
NO_LOG_TROUBLE = "*Logs*: no errors or warnings"
LOGS_NOT_READ = "*Logs*: not read ({notes})"


def logs_text(logs: Mapping[str, Any]) -> str:
    """The report's logs paragraph: the telling patterns with an example each, or why there are none."""
    notes = "; ".join(logs.get("notes", []))
    groups = logs.get("groups", [])
    if not groups:
        return (
            LOGS_NOT_READ.format(notes=notes)
            if not logs.get("read")
            else NO_LOG_TROUBLE + (f" ({notes})" if notes else "")
        )
    lines = [LOGS_HEADER]
    for g in groups:
        lines.append(LOG_LINE.format(**g))
        if g["example"] != g["pattern"]:
            lines.append(LOG_EXAMPLE.format(example=g["example"]))
    if notes:
        lines.append(f"({notes})")
    return "\n".join(lines)


def changes_text(found: Mapping[str, Any]) -> str:
    """The report's "what changed" paragraph, with the evidence for each change."""
    changes = found.get("changes", [])
    if changes:
        return "\n".join([CHANGES_HEADER, *(CHANGE_LINE.format(**change) for change in changes)])
    days, needed = found.get("history_days", 0), found.get("needed_days", 3)
    if days < needed:
        return TOO_LITTLE_HISTORY.format(days=days, needed=needed)
    return NO_CHANGES.format(days=days)


def daily_text(figures: Mapping[str, Any], *, summary: str | None, error: str = "", note: str = "") -> str:
    """The body of the daily report: the model's summary (or why it is missing), then the figures."""
    parts = [summary if summary else SUMMARY_MISSING.format(error=error or "no reply")]
    if note:
        parts.append(note)
    if not figures.get("samples"):
        parts.append(NO_SAMPLES)
    else:
        load = figures.get("load", {})
        lines = [f"*Figures* ({figures['samples']} samples over {figures['window_hours']} h)"]
        lines.append(_stat_line("CPU", figures.get("cpu %", {})))
        memory = figures.get("memory %", {})
        lines.append(_stat_line("Memory", memory) + f" of {memory.get('size GiB')} GiB")
        lines.append(_stat_line("Swap", figures.get("swap %", {})))
        lines.append(_stat_line("Load", load, "") + f" ({load.get('cores')} cores)")
        disks = ", ".join(f"{d['mount']} {d['last %']} % ({d['change pts']:+g})" for d in figures.get("disks", []))
        lines.append(f"• Disks (now, change): {disks or 'none'}")
        net = figures.get("network", {})
        lines.append(f"• Network: sent {size(net.get('sent_bytes', 0))}, received {size(net.get('recv_bytes', 0))}")
        top_cpu = figures.get("top cpu", [])
        cpu = ", ".join(f"{p['name']} {p['avg cpu %']} % (peak {p['peak cpu %']} %)" for p in top_cpu)
        mem = ", ".join(f"{p['name']} {p['peak MiB']} MiB" for p in figures.get("top memory", []))
        lines.append(f"*Top consumers*: CPU: {cpu or 'none'}; memory: {mem or 'none'}")
        parts.append("\n".join(lines))
    if figures.get("samples"):
        parts.append(changes_text(figures.get("anomalies", {})))
    if "logs" in figures:
        parts.append(logs_text(figures["logs"]))
    incidents = figures.get("incidents", [])
    if incidents:
        shown = [
            f"`{i['key']}` opened {i['opened']}, "
            + (f"{i['resolution'] or 'closed'} {i['closed']}" if i["status"] == "closed" else "still open")
            for i in incidents[:10]
        ]
        parts.append(f"*Incidents* ({len(incidents)}): " + "; ".join(shown))
    else:
        parts.append("*Incidents*: none")
    actions = figures.get("actions", {})
    counts = actions.get("counts", {})
    if counts:
        approved = "; ".join(
            f"{a['what'] or a['tool'] or 'an action'} (by {a['by']})" for a in actions.get("approved", [])[:5]
        )
        line = "*Audited actions*: " + ", ".join(f"{n} {name}" for name, n in counts.items())
        parts.append(line + (f". Approved: {approved}" if approved else ""))
    else:
        parts.append("*Audited actions*: none")
    return "\n\n".join(parts)
