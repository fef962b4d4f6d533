"""The daily analysis as plain functions: load a time window from the store, compute the figures,
draw the chart. `notebooks/daily_analysis.ipynb` calls these cell by cell (so a person can dig
in between); the report service falls back to calling them directly if the notebook cannot run.

Synchronous on purpose: they run in a notebook kernel or a worker thread.
"""

from __future__ import annotations

import json
import socket
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlmodel import col

from core.health.models import Incident, MetricSample
from core.store.db import make_engine
from core.store.models import Approval, AuditEntry

HOUR = 3600.0
DAY = 24 * HOUR

# Metric anomalies: an hour of the window against the same hour on the previous days.
BASELINE_DAYS = 7  # how many days before the window are loaded to compare with
MIN_BASELINE_DAYS = 3  # fewer days at that hour: not enough history to say what is usual
SPREAD = 3.0  # how many standard deviations from the usual value count as a change
# The smallest change worth saying, per metric (a quiet host's spread is near zero).
ANOMALY_METRICS: tuple[tuple[str, str, float], ...] = (
    ("cpu_percent", "cpu %", 15.0),
    ("mem_percent", "memory %", 15.0),
    ("swap_percent", "swap %", 10.0),
    ("load1", "load", 1.0),
)
MAX_ANOMALIES = 10


@dataclass
class Window:
    host: str
    start: float
    end: float
    samples: list[dict[str, Any]] = field(default_factory=list)  # oldest first; "disks" and "top" parsed
    incidents: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    approvals: dict[int, str] = field(default_factory=dict)  # approval id -> what it was for (its summary)
    # The days before `start` (up to BASELINE_DAYS): at, and the ANOMALY_METRICS columns only.
    baseline: list[dict[str, Any]] = field(default_factory=list)

    @property
    def hours(self) -> float:
        return (self.end - self.start) / HOUR


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""


def load_window(
    db_url: str, *, end: float | None = None, hours: float = 24.0, host: str = "", baseline_days: int = BASELINE_DAYS
) -> Window:
    """Samples, incidents and audit rows of the last `hours` before `end`, and the `baseline_days`
    before them (the metrics anomalies compare with). An empty `host` picks the host with the most
    samples in the window (the one the scheduler runs on)."""
    end = time.time() if end is None else end
    start = end - hours * HOUR
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            if not host:
                busiest = conn.execute(
                    select(col(MetricSample.host), func.count())
                    .where(col(MetricSample.at).between(start, end))
                    .group_by(col(MetricSample.host))
                    .order_by(func.count().desc())
                ).first()
                host = busiest[0] if busiest else socket.gethostname()
            rows = conn.execute(
                select(MetricSample)
                .where(col(MetricSample.host) == host, col(MetricSample.at).between(start, end))
                .order_by(col(MetricSample.at))
            ).all()
            samples = []
            for r in rows:
                sample = dict(r._mapping)
                sample["disks"] = json.loads(sample.pop("disks_json") or "[]")
                sample["top"] = json.loads(sample.pop("top_json") or "[]")
                samples.append(sample)
            incidents = [
                dict(r._mapping)
                for r in conn.execute(
                    select(Incident)
                    .where(col(Incident.host) == host, col(Incident.opened_at) <= end)
                    .where(or_(col(Incident.closed_at).is_(None), col(Incident.closed_at) >= start))
                    .order_by(col(Incident.opened_at))
                ).all()
            ]
            audit = [
                dict(r._mapping)
                for r in conn.execute(
                    select(AuditEntry).where(col(AuditEntry.at).between(start, end)).order_by(col(AuditEntry.id))
                ).all()
            ]
            columns = [col(getattr(MetricSample, name)) for name, _, _ in ANOMALY_METRICS]
            baseline = [
                dict(r._mapping)
                for r in conn.execute(
                    select(col(MetricSample.at), *columns)
                    .where(col(MetricSample.host) == host)
                    .where(col(MetricSample.at) >= start - baseline_days * DAY, col(MetricSample.at) < start)
                    .order_by(col(MetricSample.at))
                ).all()
            ]
            # A decision's audit row says who and why; what was decided is on the approval itself.
            ids = sorted({a["approval_id"] for a in audit if a["approval_id"] is not None})
            approvals = {
                int(r.id): str(r.summary)
                for r in conn.execute(
                    select(col(Approval.id), col(Approval.summary)).where(col(Approval.id).in_(ids))
                ).all()
            }
    finally:
        engine.dispose()
    return Window(host, start, end, samples, incidents, audit, approvals, baseline)


def _stats(window: Window, name: str, digits: int = 1) -> dict[str, Any]:
    values = [(s[name], s["at"]) for s in window.samples]
    if not values:
        return {}
    peak, peak_at = max(values, key=lambda v: v[0])
    return {
        "avg": round(sum(v for v, _ in values) / len(values), digits),
        "peak": round(peak, digits),
        "peak_at": _when(peak_at),
    }


def _network(window: Window) -> dict[str, int]:
    totals = {"sent_bytes": 0, "recv_bytes": 0}
    for prev, cur in zip(window.samples, window.samples[1:], strict=False):
        for out, column in (("sent_bytes", "net_sent"), ("recv_bytes", "net_recv")):
            delta = cur[column] - prev[column]
            if delta > 0:  # a negative step is a counter reset (reboot): skip it
                totals[out] += delta
    return totals


def _disks(window: Window) -> list[dict[str, Any]]:
    series: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for s in window.samples:
        for d in s["disks"]:
            series[d["m"]].append((s["at"], d["p"], d["t"]))
    out = []
    for mount, points in sorted(series.items()):
        first, last = points[0][1], points[-1][1]
        out.append({"mount": mount, "first %": first, "last %": last, "peak %": max(p for _, p, _ in points),
                    "change pts": round(last - first, 1), "size GiB": round(points[-1][2] / 2**30, 1)})  # fmt: skip
    return out


def _consumers(window: Window, n: int = 5) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    cpu: Counter[str] = Counter()
    cpu_peak: dict[str, float] = {}
    rss_peak: dict[str, int] = {}
    for s in window.samples:
        for p in s["top"]:
            cpu[p["n"]] += p["c"]
            cpu_peak[p["n"]] = max(cpu_peak.get(p["n"], 0.0), p["c"])
            rss_peak[p["n"]] = max(rss_peak.get(p["n"], 0), p["r"])
    count = max(1, len(window.samples))
    by_cpu = [{"name": name, "avg cpu %": round(total / count, 1), "peak cpu %": cpu_peak[name]}
              for name, total in cpu.most_common(n) if total > 0]  # fmt: skip
    by_mem = [{"name": name, "peak MiB": round(rss / 2**20)}
              for name, rss in sorted(rss_peak.items(), key=lambda kv: kv[1], reverse=True)[:n]]  # fmt: skip
    return by_cpu, by_mem


def _actions(window: Window) -> dict[str, Any]:
    counts = Counter(a["action"] for a in window.audit)

    def decision(a: dict[str, Any]) -> dict[str, Any]:
        what = window.approvals.get(a["approval_id"]) or a["detail"] or a["tool"]
        return {"at": _when(a["at"]), "tool": a["tool"], "what": what[:160], "by": a["decider"],
                "why": a["detail"][:160]}  # fmt: skip

    approved = [decision(a) for a in window.audit if a["action"] == "approved"]
    denied = [decision(a) for a in window.audit if a["action"] in {"denied", "expired"}]
    return {"counts": dict(sorted(counts.items())), "approved": approved[:20], "denied": denied[:20]}


def _hourly(samples: list[dict[str, Any]], name: str) -> dict[tuple[str, int], float]:
    """(local day, hour of day) -> the metric's mean over the samples of that hour."""
    buckets: dict[tuple[str, int], list[float]] = defaultdict(list)
    for s in samples:
        if s.get(name) is None:
            continue
        local = time.localtime(s["at"])
        buckets[(time.strftime("%Y-%m-%d", local), local.tm_hour)].append(float(s[name]))
    return {key: sum(values) / len(values) for key, values in buckets.items()}


def anomalies(window: Window) -> dict[str, Any]:
    """What changed: each hour of the window whose mean is far from the same hour on the previous
    days (further than SPREAD standard deviations and than the metric's smallest change worth
    saying). Plain arithmetic over the store's samples; no model is involved."""
    found: list[dict[str, Any]] = []
    days_seen = {time.strftime("%Y-%m-%d", time.localtime(s["at"])) for s in window.baseline}
    for name, label, floor in ANOMALY_METRICS:
        usual: dict[int, list[float]] = defaultdict(list)
        for (_, hour), mean in _hourly(window.baseline, name).items():
            usual[hour].append(mean)
        for (day, hour), value in sorted(_hourly(window.samples, name).items()):
            history = usual.get(hour, [])
            if len(history) < MIN_BASELINE_DAYS:
                continue
            mean, spread = statistics.fmean(history), statistics.pstdev(history)
            gap = value - mean
            if abs(gap) < max(SPREAD * spread, floor):
                continue
            found.append({
                "metric": label, "day": day, "hour": f"{hour:02d}:00", "value": round(value, 1),
                "usual": round(mean, 1), "spread": round(spread, 1), "days": len(history),
                "direction": "higher" if gap > 0 else "lower", "score": round(abs(gap) / max(spread, floor), 2),
            })  # fmt: skip
    found.sort(key=lambda a: a["score"], reverse=True)
    return {"history_days": len(days_seen), "needed_days": MIN_BASELINE_DAYS, "changes": found[:MAX_ANOMALIES]}


def compute_figures(window: Window) -> dict[str, Any]:
    """Everything the report states, as JSON-ready data."""
    figures: dict[str, Any] = {
        "host": window.host,
        "start": _when(window.start),
        "end": _when(window.end),
        "window_hours": round(window.hours, 1),
        "samples": len(window.samples),
    }
    if window.samples:
        last = window.samples[-1]
        top_cpu, top_mem = _consumers(window)
        figures |= {
            "cpu %": _stats(window, "cpu_percent"),
            "memory %": _stats(window, "mem_percent") | {"size GiB": round(last["mem_total"] / 2**30, 1)},
            "swap %": _stats(window, "swap_percent"),
            "load": _stats(window, "load1", 2) | {"cores": last["cpu_cores"]},
            "disks": _disks(window),
            "network": _network(window),
            "top cpu": top_cpu,
            "top memory": top_mem,
        }
    figures["incidents"] = [
        {"key": i["key"], "status": i["status"], "opened": _when(i["opened_at"]), "closed": _when(i["closed_at"]),
         "resolution": i["resolution"], "summary": i["summary"][:200], "failing passes": i["failures"]}
        for i in window.incidents
    ]  # fmt: skip
    figures["actions"] = _actions(window)
    figures["anomalies"] = anomalies(window)
    return figures


def write_figures(figures: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=1, ensure_ascii=False, default=str))
    return path


def draw_chart(window: Window, path: str | Path, *, dpi: int = 100) -> Path:
    """CPU, memory, disk per mount and load over the window, incidents shaded. No pyplot: the
    figure is drawn on its own Agg canvas, so a notebook's backend is left alone."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chart_figure(window, dpi=dpi).savefig(path, format="png")
    return path


def chart_figure(window: Window, *, dpi: int = 100) -> Any:
    """The chart's matplotlib Figure (on an Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    tz = datetime.now().astimezone().tzinfo
    fig = Figure(figsize=(11, 9), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, 1, sharex=True)
    fig.suptitle(f"{window.host}: {_when(window.start)} → {_when(window.end)}")

    def t(ts: float) -> datetime:
        return datetime.fromtimestamp(ts, tz)

    times = [t(s["at"]) for s in window.samples]
    cpu_ax, mem_ax, disk_ax, load_ax = axes
    cpu_ax.plot(times, [s["cpu_percent"] for s in window.samples], color="tab:blue", lw=1)
    cpu_ax.set_ylabel("CPU %")
    mem_ax.plot(times, [s["mem_percent"] for s in window.samples], color="tab:purple", lw=1, label="memory")
    mem_ax.plot(times, [s["swap_percent"] for s in window.samples], color="tab:gray", lw=1, ls="--", label="swap")
    mem_ax.set_ylabel("memory %")
    mounts: dict[str, tuple[list[datetime], list[float]]] = defaultdict(lambda: ([], []))
    for s in window.samples:
        for d in s["disks"]:
            mounts[d["m"]][0].append(t(s["at"]))
            mounts[d["m"]][1].append(d["p"])
    for mount, (xs, ys) in sorted(mounts.items()):
        disk_ax.plot(xs, ys, lw=1, label=mount)
    disk_ax.set_ylabel("disk %")
    load_ax.plot(times, [s["load1"] for s in window.samples], color="tab:orange", lw=1, label="load (1 min)")
    if window.samples:
        load_ax.axhline(window.samples[-1]["cpu_cores"], color="tab:red", lw=0.8, ls=":", label="cores")
    load_ax.set_ylabel("load")
    load_ax.set_ylim(bottom=0)
    for ax in (cpu_ax, mem_ax, disk_ax):
        ax.set_ylim(0, 100)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xlim(t(window.start), t(window.end))
    for ax in (mem_ax, disk_ax, load_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize="small")
    for incident in window.incidents:
        left = t(max(incident["opened_at"], window.start))
        right = t(min(incident["closed_at"] or window.end, window.end))
        for ax in axes:
            ax.axvspan(left, right, color="tab:red", alpha=0.15, lw=0)
        cpu_ax.annotate(incident["key"], (left, 2), fontsize="x-small", color="tab:red", va="bottom", rotation=90)
    if not window.samples:
        cpu_ax.text(0.5, 0.5, "no samples in this window", transform=cpu_ax.transAxes, ha="center")
    # Ticks and labels that suit the window: seconds on a few minutes, days on a week; each label
    # once (a fixed "%H:%M" repeats itself on short windows and across days on long ones).
    locator = AutoDateLocator(tz=tz, minticks=4, maxticks=10)  # type: ignore[no-untyped-call]
    load_ax.xaxis.set_major_locator(locator)
    load_ax.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=tz))  # type: ignore[no-untyped-call]
    return fig


def run_analysis(
    db_url: str, *, end: float | None, hours: float, host: str, png: str | Path, json_path: str | Path
) -> dict[str, Any]:
    """The notebook's work in one call (the fallback when the notebook itself cannot run)."""
    window = load_window(db_url, end=end, hours=hours, host=host)
    figures = compute_figures(window)
    draw_chart(window, png)
    write_figures(figures, json_path)
    return figures
