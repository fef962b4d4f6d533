"""`orchestrator runs`: the latest runs and how each ended (a change workflow's verdict too);
`runs show ID`: one run as an inspector reads it, every step in full from the store (a
workflow's phases as headings, thinking, tool calls and their whole output, approvals, the QA
results), and with `--raw` the messages the model was sent and answered."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from typing import Any

from bot import texts
from bot.commands import EXIT_MISTAKE, count
from core.workflow import QA_TOOLS

INDENT = "    "


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "-"


def _took(started: float, finished: float | None) -> str:
    return f"{finished - started:.1f} s" if finished else "still running"


def _block(text: str) -> str:
    return textwrap.indent(text.rstrip() or "(empty)", INDENT)


def _one_line(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def list_runs(args: argparse.Namespace) -> int:
    from bot.app import open_store
    from bot.settings import load_settings

    rows = open_store(load_settings()).runs_sync(limit=args.last)
    if args.json:
        print(json.dumps([r.model_dump() | {"steps": kinds} for r, kinds in rows], indent=2, default=str))
        return 0
    if not rows:
        print(texts.RUNS_EMPTY)
        return 0
    for run, kinds in rows:
        tools, approvals = kinds.get("ToolCall", 0), kinds.get("ApprovalRequested", 0)
        ending = run.error if run.error else ""
        if run.verdict:
            ending = f"{run.verdict}: {run.verdict_reason}"
        status = f"{run.status} {run.verdict}".strip()
        print(
            f"#{run.id:<5} {_when(run.started_at)}  {status:<16} {run.platform}:{run.user_id}  "
            f"{tools} tool call(s), {approvals} approval(s), {_took(run.started_at, run.finished_at)}  "
            f"“{_one_line(run.request_text)}”" + (f"  · {_one_line(ending, 80)}" if ending else "")
        )
    return 0


def _step_lines(kind: str, p: dict[str, Any]) -> list[str]:
    """One stored step as the inspector reads it: nothing cut, secrets already redacted at store time."""
    if kind == "Thinking":
        return ["thinking:", _block(p.get("text", ""))]
    if kind == "ToolCall":
        shown = json.dumps(p.get("args", {}), ensure_ascii=False, sort_keys=True)
        return [f"→ {p.get('tool')} {shown}  (call {p.get('call_id')})"]
    if kind == "ToolResult":
        if p.get("refused"):
            return [f"✗ {p.get('tool')}: {p['refused']}"]
        mark = "✓" if p.get("ok") else "✗"
        cut = " (cut at the output cap)" if p.get("truncated") else ""
        return [f"{mark} {p.get('tool')} output{cut}:", _block(p.get("output", ""))]
    if kind == "ApprovalRequested":
        return [
            f"? approval #{p.get('approval_id')} ({p.get('risk')}, host {p.get('host')}): {p.get('summary')}",
            _block(p.get("detail", "")),
        ]
    if kind == "ApprovalResolved":
        verdict = "approved" if p.get("approved") else "not approved"
        why = f" ({p['reason']})" if p.get("reason") else ""
        mark = "✓" if p.get("approved") else "✗"
        return [f"{mark} approval #{p.get('approval_id')} {verdict} by {p.get('decided_by')}{why}"]
    if kind == "Phase":
        if p.get("phase") == "COMPLETE":
            return [f"== COMPLETE: {p.get('verdict')} ==", _block(p.get("text", ""))]
        return [f"== {p.get('phase')} =="] + ([_block(p["text"])] if p.get("text") else [])
    if kind == "Answer":
        return ["answer:", _block(p.get("text", ""))]
    if kind == "Failed":
        return [f"failed: {p.get('error', '')}"]
    return [f"{kind}:", _block(json.dumps(p, ensure_ascii=False, indent=1, default=str))]


def show_run(args: argparse.Namespace) -> int:
    from bot.app import open_store
    from bot.settings import load_settings

    record = open_store(load_settings()).run_record_sync(args.id)
    if record is None:
        print(texts.RUN_UNKNOWN.format(id=args.id), file=sys.stderr)
        return EXIT_MISTAKE
    run, steps, messages = record
    if args.json:
        out = run.model_dump() | {
            "steps": [{"seq": s.seq, "kind": s.kind, "phase": s.phase, **json.loads(s.payload_json)} for s in steps]
        }
        if args.raw:
            out["messages"] = [m.model_dump() for m in messages]
        print(json.dumps(out, indent=2, default=str, ensure_ascii=False))
        return 0
    print(f"run #{run.id}: {run.status}, asked by {run.platform}:{run.user_id} in {run.channel or '-'}")
    print(f"started {_when(run.started_at)}, ended {_when(run.finished_at)} ({_took(run.started_at, run.finished_at)})")
    if run.verdict:
        print(f"verdict: {run.verdict}: {run.verdict_reason}")
    print("request:")
    print(_block(run.request_text))
    qa: list[str] = []
    for step in steps:
        payload = json.loads(step.payload_json)
        for line in _step_lines(step.kind, payload):
            print(line)
        if step.kind == "ToolResult" and payload.get("tool") in QA_TOOLS and not payload.get("refused"):
            first = next((ln for ln in payload.get("output", "").splitlines() if ln.strip()), "")
            qa.append(f"{'✓' if payload.get('ok') else '✗'} {payload['tool']} ({step.phase or 'no phase'}): {first}")
    if qa:
        print("QA results:")
        print(_block("\n".join(qa)))
    if run.error and not any(s.kind == "Failed" for s in steps):
        print(f"error: {run.error}")
    if args.raw:
        print(f"\nmodel messages ({len(messages)}):")
        for m in messages:
            head = f"[{m.role}{' ' + m.tool_name if m.tool_name else ''}]"
            print(head)
            if m.content:
                print(_block(m.content))
            if m.tool_calls_json:
                print(_block(f"tool_calls: {m.tool_calls_json}"))
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("runs", help="the latest runs and how each ended; `runs show ID` for one in full")
    p.add_argument("--last", type=count, default=20, metavar="N", help="how many runs (default 20)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=list_runs)
    sub = p.add_subparsers(dest="runs_command")
    show = sub.add_parser("show", help="one run: every step in full, from the store")
    show.add_argument("id", type=count, help="the run's number, as `orchestrator runs` lists it")
    show.add_argument("--raw", action="store_true", help="also the messages the model was sent and answered")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=show_run)
