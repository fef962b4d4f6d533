"""Bench: how soon the console shows a reasoning model's thinking.

The real CLI (`python -m bot ask`) runs against the Ollama stand-in, which streams a
model that thinks for about 10 s (200 thinking chunks, 50 ms apart) and then answers.
The delay measured is from the moment the stand-in wrote its first chunk to the moment
the first thinking words appear on the CLI's stdout, through a pipe and through a
terminal (a pty). Target: at most 0.3 s (Hermes Agent shows it in about 0.1 s). The
answer must follow, and the thinking must be printed once.

    .venv/bin/python bench/live_console.py [--runs 3] [--chunks 200] [--delay 0.05]
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.fakes

from tests.fakes.ollama import FakeOllama, Reply  # noqa: E402

TARGET = 0.3
FIRST_WORDS = b"Considering the"


def thinking(chunks: int) -> list[str]:
    words = ["Considering the question about the disk, "] + [f"step {i} of my reasoning, " for i in range(chunks - 1)]
    return words


def env_for(tmp: Path, fake: FakeOllama) -> dict[str, str]:
    root = tmp / "root"
    root.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "SLACK_", "DISCORD_"))}
    return base | {
        "ORCHESTRATOR_DATA_DIR": str(tmp / "data"),
        "OLLAMA_HOST": fake.url,
        "ORCHESTRATOR_FILE_ROOTS": str(root),
        "ORCHESTRATOR_MEMORY": "false",
        "ORCHESTRATOR_SCHEDULER": "false",
        "ORCHESTRATOR_CONSOLE_APPROVERS": "bench",
        "PYTHONUNBUFFERED": "1",
    }


def read_until_done(fd: int, proc: subprocess.Popen[bytes]) -> tuple[float | None, bytes]:
    """Read the CLI's output as it comes; when the first thinking words appeared, and all of it."""
    seen = b""
    first: float | None = None
    while True:
        ready, _, _ = select.select([fd], [], [], 0.005)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # a pty reports EIO once the child is gone
                data = b""
            if not data:
                return first, seen
            seen += data
            if first is None and FIRST_WORDS in seen:
                first = time.time()
        elif proc.poll() is not None and not ready:
            # drain what is left
            try:
                rest = os.read(fd, 65536)
            except OSError:
                rest = b""
            if not rest:
                return first, seen
            seen += rest


def one_run(fake: FakeOllama, tmp: Path, *, terminal: bool, chunks: int, delay: float) -> tuple[float, bytes]:
    answer = "The disk is 41% full."
    fake.script(Reply(thinking_pieces=thinking(chunks), content=answer, chunk_delay=delay))
    before = len(fake.first_chunk_times)
    cmd = [sys.executable, "-m", "bot", "ask", "why is the disk full?"]
    if terminal:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(cmd, cwd=tmp, env=env_for(tmp, fake), stdin=subprocess.DEVNULL, stdout=follower,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        os.close(follower)
        fd = leader
    else:
        proc = subprocess.Popen(cmd, cwd=tmp, env=env_for(tmp, fake), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
    first, out = read_until_done(fd, proc)
    proc.wait(60)
    if terminal:
        os.close(fd)
    if first is None or len(fake.first_chunk_times) <= before:
        where = "pty" if terminal else "pipe"
        raise SystemExit(f"no thinking seen on the console ({where}):\n{out.decode(errors='replace')}")
    return first - fake.first_chunk_times[before], out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.05)
    args = parser.parse_args()
    failures = 0
    with FakeOllama() as fake, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        print(f"console: a model thinking for {args.chunks * args.delay:.0f} s ({args.chunks} chunks), then answering")
        for terminal in (False, True):
            delays: list[float] = []
            for _ in range(args.runs):
                delay, out = one_run(fake, tmp, terminal=terminal, chunks=args.chunks, delay=args.delay)
                delays.append(delay)
                text = out.decode(errors="replace")
                if text.count("Considering the question") != 1 or "41% full" not in text:
                    failures += 1
                    print(f"  output not as expected ({'pty' if terminal else 'pipe'}):\n{text[-500:]}")
            worst = max(delays)
            print(f"  {'terminal (pty)' if terminal else 'pipe':15} first thinking visible after the model's first "
                  f"token: median {statistics.median(delays):.3f} s, worst {worst:.3f} s "
                  f"(target <= {TARGET} s: {'met' if worst <= TARGET else 'NOT met'})")  # fmt: skip
            failures += worst > TARGET
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
