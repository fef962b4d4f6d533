"""What the sandbox costs per command: the same argv plain and through bubblewrap.

.venv/bin/python bench/sandbox_cost.py [--runs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.process import run_process
from core.sandbox import Sandbox, SandboxConfig


async def timed(runs: int, make: object) -> list[float]:
    samples: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        await make()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.9) - 1]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="orch-sandbox-bench-"))
    (root / "app.log").write_text("line\n" * 1000)
    sandbox = Sandbox(SandboxConfig(file_roots=(root,)))
    status = await sandbox.probe()
    if not status.available:
        print(f"sandbox unavailable: {status.describe()}")
        return 1
    print(f"{'command':<14} {'plain p50':>10} {'p90':>8} {'sandbox p50':>12} {'p90':>8} {'overhead p50':>13}")
    for argv in (["true"], ["cat", "app.log"], ["df", "-h"]):
        plain = await timed(args.runs, lambda a=argv: run_process(a, cwd=str(root), env={}))  # type: ignore[misc]
        boxed = await timed(
            args.runs,
            lambda a=argv: sandbox.run(a, cwd=root, timeout=30, output_cap=65536),  # type: ignore[misc]
        )
        p50, p90 = summary(plain)
        s50, s90 = summary(boxed)
        print(f"{' '.join(argv):<14} {p50:>8.2f}ms {p90:>6.2f}ms {s50:>10.2f}ms {s90:>6.2f}ms {s50 - p50:>11.2f}ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
