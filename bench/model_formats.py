"""Real local-model outputs through the real CLI: are their calls, answers and reasoning read right?

    .venv/bin/python bench/model_formats.py ../shared/corpora/model_outputs.json [--only ID] [--jobs N]

The corpus is read by path and never copied into the repository. Each sample is raw model
output (content, Ollama's separate thinking, structured calls) with a `mapping` of string
replacements that turns its tools into ours, and the reading it should get. For each one,
`orchestrator ask` runs as a subprocess against the streaming stand-in (`FakeOllama`),
which sends the content in pieces of 3-8 characters, so markers arrive split; any later
turn of the model answers "Done.", and approvals are denied on stdin. Then the run is read
back from the store: the calls made (name and arguments, in order, compared exactly), the
stored answer (`answer_has` all present, `answer_not` all absent), and stdout is checked
for special tokens and call markup. One line per failing sample, then the share read
correctly; exit 1 below 95 %.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fakes

from tests.fakes.ollama import FakeOllama, Reply

REPO = Path(__file__).resolve().parents[1]
TARGET = 95.0
USER = "bench-user"
QUESTION = "Check this for me, please."
# Written independently of core.formats, so the check does not share its blind spots.
LEAKS = re.compile(
    r"<\|[A-Za-z_/][^|\s]{0,40}\|>|<｜[^｜\s]{1,40}｜>|\[/?(?:TOOL_CALLS|THINK|ARGS|CALL_ID|INST)\]"
    r"|</?think>|</?tool_call>|<function=|</function>|<parameter=|</?function_calls>|<invoke\b"
    r"|<(?:start|end)_function_call>|<escape>|</?arg_(?:key|value)>|</?response>|functools\[|</s>"
)


@dataclass(frozen=True, slots=True)
class Outcome:
    sample: str
    problems: tuple[str, ...]


def _mapped(value: Any, mapping: Sequence[Sequence[str]]) -> Any:
    """The sample's value with its tool names and arguments mapped onto ours (on its JSON text
    for structured values, exactly as the corpus describes)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    for old, new in mapping:
        text = text.replace(old, new)
    return text if isinstance(value, str) else json.loads(text)


def _pieces(text: str, rnd: random.Random) -> list[str]:
    pieces, at = [], 0
    while at < len(text):
        size = rnd.randint(3, 8)
        pieces.append(text[at : at + size])
        at += size
    return pieces


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)  # 1, 1.0 and true stay apart


def _python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def _run_cli(tmp: Path, ollama_url: str) -> subprocess.CompletedProcess[str]:
    root = tmp / "root"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "SLACK_", "DISCORD_", "OLLAMA"))}
    env |= {
        "ORCHESTRATOR_DATA_DIR": str(tmp / "data"),
        "OLLAMA_HOST": ollama_url,
        "ORCHESTRATOR_FILE_ROOTS": str(root),
        "ORCHESTRATOR_MEMORY": "false",
        "ORCHESTRATOR_SCHEDULER": "false",
        "ORCHESTRATOR_CONSOLE_APPROVERS": USER,
        "USER": USER,
        "LOGNAME": USER,
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        [_python(), "-m", "bot", "ask", QUESTION],
        input="n\n" * 8,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=120,
    )


def _stored(database: Path) -> tuple[list[dict[str, Any]], str, str]:
    """The last run's tool calls, answer and error, as the store holds them."""
    with sqlite3.connect(database) as db:
        run = db.execute("select id, answer, error from run order by id desc limit 1").fetchone()
        if run is None:
            return [], "", "no run was stored"
        steps = db.execute("select kind, payload_json from step where run_id = ? order by seq", (run[0],)).fetchall()
    calls = [json.loads(payload) for kind, payload in steps if kind == "ToolCall"]
    return [{"name": c["tool"], "arguments": c["args"]} for c in calls], run[1] or "", run[2] or ""


def check(sample: dict[str, Any], fake: FakeOllama) -> Outcome:
    mapping = sample.get("mapping", [])
    content = _mapped(sample.get("content", ""), mapping)
    thinking = _mapped(sample.get("thinking", ""), mapping)
    tool_calls = _mapped(sample.get("tool_calls", []), mapping)
    rnd = random.Random(sample["id"])
    fake.reset()
    fake.default_reply = Reply(content="Done.")
    fake.script(
        Reply(
            content=content,
            thinking=thinking,
            tool_calls=tool_calls,
            content_pieces=_pieces(content, rnd),
            thinking_pieces=_pieces(thinking, rnd),
        )
    )
    with tempfile.TemporaryDirectory(prefix="orch-formats-") as name:
        tmp = Path(name)
        try:
            proc = _run_cli(tmp, fake.url)
        except subprocess.TimeoutExpired:
            return Outcome(sample["id"], ("the CLI did not finish within 120 s",))
        database = tmp / "data" / "orchestrator.db"
        if not database.exists():
            return Outcome(sample["id"], (f"no store was written; stderr: {proc.stderr.strip()[-300:]!r}",))
        calls, answer, error = _stored(database)

    expect = sample["expect"]
    problems: list[str] = []
    if error:
        problems.append(f"the run failed: {error[:200]!r}")
    if [_canonical(c) for c in calls] != [_canonical(c) for c in expect["calls"]]:
        problems.append(f"calls: expected {_canonical(expect['calls'])}, made {_canonical(calls)}")
    missing = [s for s in expect["answer_has"] if s not in answer]
    present = [s for s in expect["answer_not"] if s in answer]
    if missing or present:
        problems.append(f"answer {answer[:160]!r}: lacks {missing}, has {present}")
    leaks = sorted(set(LEAKS.findall(proc.stdout)))
    if leaks:
        problems.append(f"markup on stdout: {leaks}")
    return Outcome(sample["id"], tuple(problems))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="path to model_outputs.json")
    parser.add_argument("--only", action="append", default=[], help="run only the sample with this id (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="samples run at once (default 2)")
    args = parser.parse_args()
    data = json.loads(args.corpus.read_text(encoding="utf-8"))
    samples = data["samples"] if isinstance(data, dict) else data
    if args.only:
        samples = [s for s in samples if s["id"] in args.only]

    started = time.perf_counter()
    fakes: Queue[FakeOllama] = Queue()  # one stand-in per sample running, each scripted for its sample alone
    jobs = max(1, args.jobs)
    for _ in range(jobs):
        fakes.put(FakeOllama().start())

    def one(sample: dict[str, Any]) -> Outcome:
        fake = fakes.get()
        try:
            return check(sample, fake)
        finally:
            fakes.put(fake)

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            outcomes = list(pool.map(one, samples))
    finally:
        while not fakes.empty():
            fakes.get().stop()
    elapsed = time.perf_counter() - started

    for outcome in outcomes:
        if outcome.problems:
            print(f"FAIL {outcome.sample}: " + "; ".join(outcome.problems))
    good = sum(1 for o in outcomes if not o.problems)
    share = 100.0 * good / max(len(outcomes), 1)
    print(f"read correctly: {good}/{len(outcomes)} ({share:.0f} %)  [{elapsed:.0f} s, {args.jobs} at once]")
    return 0 if share >= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
