"""Tables of the health package. Timestamps are UTC epoch seconds, like the rest of the store."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, text
from sqlmodel import Field, SQLModel


class MetricSample(SQLModel, table=True):
    """One psutil reading (every minute by default). Per-mount disks and top processes as compact JSON."""

    __table_args__ = (Index("ix_metricsample_host_at", "host", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    at: float
    host: str
    cpu_percent: float
    cpu_cores: int
    load1: float
    load5: float
    load15: float
    mem_percent: float
    # bytes: 64-bit (a host with more than 2 GiB overflows PostgreSQL's INTEGER)
    mem_used: int = Field(sa_column=Column(BigInteger, nullable=False))
    mem_total: int = Field(sa_column=Column(BigInteger, nullable=False))
    swap_percent: float
    net_sent: int = Field(
        sa_column=Column(BigInteger, nullable=False)
    )  # counters since boot: the analysis takes differences
    net_recv: int = Field(sa_column=Column(BigInteger, nullable=False))
    disks_json: str = "[]"  # [{"m": mount, "p": percent, "u": used bytes, "t": total bytes, "f": free bytes}]
    top_json: str = "[]"  # [{"n": name, "pid": pid, "c": cpu %, "r": rss bytes}]


OPEN_ONLY = text("status = 'open'")


class Incident(SQLModel, table=True):
    """A failing check, from its first failure to its recovery. At most one open row per host and key."""

    __table_args__ = (
        Index("ux_incident_open_key", "host", "key", unique=True, sqlite_where=OPEN_ONLY, postgresql_where=OPEN_ONLY),
    )
    id: int | None = Field(default=None, primary_key=True)
    host: str
    key: str = Field(index=True)  # "disk:/var", "docker", "systemd:nginx.service"
    check_name: str
    status: str = "open"  # open | closed
    summary: str
    figures_json: str = "{}"
    opened_at: float = Field(index=True)
    updated_at: float
    closed_at: float | None = None
    failures: int = 1  # failing passes seen, reopenings included
    resolution: str = ""  # recovered | fixed
    posts_json: str = "{}"  # {platform: {"channel": …, "ref": …}}: where the incident message lives


class SchedulerLock(SQLModel, table=True):
    """A lease: the process named in `owner` runs the scheduled jobs until `expires_at`, renewing as it goes."""

    name: str = Field(primary_key=True)
    owner: str
    acquired_at: float
    heartbeat_at: float
    expires_at: float
