"""Read-only host facts through psutil (in a worker thread: some calls sample for a moment)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import psutil

from core.events import Risk
from core.tools.registry import ToolSpec, tool

PSEUDO_FS = frozenset(
    {"proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "cgroup", "cgroup2", "overlay", "squashfs", "nsfs",
     "tracefs", "debugfs", "securityfs", "pstore", "bpf", "autofs", "mqueue", "hugetlbfs", "fusectl",
     "configfs", "binfmt_misc", "efivarfs", "ramfs", "rpc_pipefs", "nfsd", "fuse.lxcfs"}
)  # fmt: skip


def _gib(n: float) -> float:
    return round(n / 2**30, 2)


def top_processes(limit: int = 8, sample: float = 0.3) -> list[dict[str, Any]]:
    procs = list(psutil.process_iter(["pid", "name", "username", "memory_percent", "memory_info"]))
    for p in procs:
        try:
            p.cpu_percent(None)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    time.sleep(sample)
    rows = []
    for p in procs:
        try:
            cpu = p.cpu_percent(None)
            info = p.info
            rss = info["memory_info"].rss if info.get("memory_info") else 0
            rows.append(
                {
                    "pid": info["pid"],
                    "name": info["name"],
                    "user": info.get("username") or "",
                    "cpu_percent": round(cpu, 1),
                    "mem_percent": round(info.get("memory_percent") or 0.0, 1),
                    "rss_mib": round(rss / 2**20, 1),
                }
            )
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    rows.sort(key=lambda r: (r["cpu_percent"], r["mem_percent"]), reverse=True)
    return rows[:limit]


def system_snapshot(top: int = 8) -> dict[str, Any]:
    vm = psutil.virtual_memory()
    sw = psutil.swap_memory()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    boot = psutil.boot_time()
    return {
        "cpu_percent": psutil.cpu_percent(interval=0.2),
        "cpu_cores": psutil.cpu_count() or 1,
        "load_avg_1_5_15": [round(x, 2) for x in load],
        "memory": {"total_gib": _gib(vm.total), "used_gib": _gib(vm.total - vm.available), "percent": vm.percent},
        "swap": {"total_gib": _gib(sw.total), "used_gib": _gib(sw.used), "percent": sw.percent},
        "uptime_hours": round((time.time() - boot) / 3600, 1),
        "top_processes": top_processes(top),
    }


def disk_snapshot() -> list[dict[str, Any]]:
    rows = []
    seen: set[str] = set()
    for part in psutil.disk_partitions(all=False):
        if part.fstype in PSEUDO_FS or part.mountpoint in seen:
            continue
        seen.add(part.mountpoint)
        try:
            u = psutil.disk_usage(part.mountpoint)
        except (PermissionError, OSError):
            continue
        rows.append(
            {
                "mount": part.mountpoint,
                "device": part.device,
                "fstype": part.fstype,
                "total_gib": _gib(u.total),
                "used_gib": _gib(u.used),
                "free_gib": _gib(u.free),
                "percent": u.percent,
            }
        )
    if not rows:  # containers often list only overlay roots; report / at least
        u = psutil.disk_usage("/")
        rows.append(
            {"mount": "/", "device": "", "fstype": "", "total_gib": _gib(u.total), "used_gib": _gib(u.used),
             "free_gib": _gib(u.free), "percent": u.percent}
        )  # fmt: skip
    return rows


def system_tools() -> list[ToolSpec]:
    @tool(risk=Risk.READ)
    async def system_info() -> dict[str, Any]:
        """CPU, memory, swap, load average, uptime and the top processes of this host."""
        return await asyncio.to_thread(system_snapshot)

    @tool(risk=Risk.READ)
    async def disk_usage() -> list[dict[str, Any]]:
        """Disk usage per mounted filesystem: size, used, free and percent used."""
        return await asyncio.to_thread(disk_snapshot)

    return [system_info, disk_usage]
