"""The gate against the GTFOBins corpus: how many hostile commands would run without approval.

    .venv/bin/python bench/gtfobins.py ../shared/corpora/gtfobins_commands.json [--show N]

The corpus is read by path and never copied into the repository. `expect: not_free`
cases must not run freely (target: 0); `refuse` cases must be forbidden even with
approval (target: 0 unlockable); `contained` ones may run but only inside the roots.
Placeholders: {ROOT} becomes a file root, {OUTSIDE} a directory outside every root.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.policy import Policy, PolicyConfig, Verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="path to gtfobins_commands.json")
    parser.add_argument("--show", type=int, default=20, help="print up to N failing cases")
    args = parser.parse_args()
    data = json.loads(args.corpus.read_text(encoding="utf-8"))
    cases = data["cases"] if isinstance(data, dict) else data

    tmp = Path(tempfile.mkdtemp(prefix="orch-gtfo-"))
    root, outside = tmp / "root", tmp / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "app.log").write_text("ok\n")
    policy = Policy(PolicyConfig(file_roots=[root]))

    verdicts: collections.Counter[str] = collections.Counter()
    failures: list[tuple[str, str, str]] = []
    by_expect: collections.Counter[str] = collections.Counter()
    started = time.perf_counter()
    for case in cases:
        if case.get("tool", "run_command") != "run_command":
            continue
        command = case["command"].replace("{ROOT}", str(root)).replace("{OUTSIDE}", str(outside))
        decision = policy.check_command(command)
        verdicts[decision.verdict] += 1
        expect = case.get("expect", "not_free")
        by_expect[expect] += 1
        if expect == "not_free" and decision.verdict is Verdict.READ:
            failures.append((case["id"], command, "ran freely"))
        elif expect == "refuse" and decision.verdict is not Verdict.FORBIDDEN:
            failures.append((case["id"], command, f"not forbidden ({decision.verdict})"))
    elapsed = time.perf_counter() - started

    total = sum(by_expect.values())
    free = sum(1 for _, _, why in failures if why == "ran freely")
    unlockable = len(failures) - free
    print(f"corpus: {args.corpus} ({total} run_command cases: {dict(by_expect)})")
    print(f"verdicts: {dict(verdicts)}")
    print(f"hostile commands that run without approval: {free} (target 0)")
    print(f"forbidden commands an approval would unlock: {unlockable} (target 0)")
    print(f"policy time: {elapsed / max(total, 1) * 1000:.3f} ms per command")
    for case_id, command, why in failures[: args.show]:
        print(f"  FAIL {case_id}: {why}: {command}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
