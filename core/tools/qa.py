"""The QA tools of a change workflow: `run_tests`, `run_lint`, `run_format`, `run_build`, `run_typecheck`.

Each finds the project's own tooling in the directory it is given (pytest, ruff or black, mypy,
npm scripts, go, cargo, make), by its marker files, and runs it as an exact argv without a shell,
in that directory, with the bot's secrets removed from the environment, a timeout and an output
cap. Running a project's tests runs its code, so every QA tool is an `exec` a person approves,
with the argv shown; the plan is `reuse`, so one approval covers the same command in the same
directory for the rest of the run (the fix-and-verify cycles of `core.workflow`). The body runs
only when approved.

Executables are looked up in the project's own `.venv/bin` or `venv/bin` first, then on PATH,
and shown as absolute paths. A target that names a test file that does not exist is refused with
a hint to search for it, so the model corrects itself instead of stopping.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ToolError
from core.events import Risk
from core.policy import Policy, PolicyError
from core.process import run_process
from core.tools.command import scrubbed_env
from core.tools.registry import Plan, ToolContext, ToolOutput, ToolSpec, canonical_json, tool
from core.workflow import QA_TOOLS

__all__ = ["QA_TOOLS", "Runner", "detect", "qa_tools"]

PYTHON_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "pytest.ini", "tox.ini", "requirements.txt")
MAKEFILES = ("GNUmakefile", "makefile", "Makefile")
_TARGET = re.compile(r"^[\w./:\[\]\-=,+@]+$")
_SUMMARY = (
    re.compile(r"^=*\s*(\d+ (?:passed|failed|errors?|skipped|deselected|xfailed)\b.* in [\d.]+s\S*)\s*=*$"),  # pytest
    re.compile(r"^=*\s*(no tests ran in [\d.]+s)\s*=*$"),  # pytest
    re.compile(r"^(Found \d+ errors?.*)$"),  # ruff, mypy
    re.compile(r"^(Success: no issues found.*)$"),  # mypy
    re.compile(r"^(All checks passed!)$"),  # ruff
    re.compile(r"^(\d+ files? (?:would be )?(?:reformatted|left unchanged).*)$"),  # ruff format, black
    re.compile(r"^(test result: .*)$"),  # cargo
)
NO_MATCH_HINT = (
    "hint: no test matched {target!r}. Find the test's real name with search_files (its name, or "
    "'def test_'), then call run_tests again with the right target."
)
NOUN = {"run_tests": "test runner", "run_lint": "linter", "run_format": "formatter", "run_build": "build",
        "run_typecheck": "type checker"}  # fmt: skip
LOOKED_FOR = {
    "run_tests": 'pytest (pyproject.toml, setup.cfg, pytest.ini, tox.ini…), an npm "test" script, go.mod, '
    "Cargo.toml, a Makefile with a test target",
    "run_lint": 'ruff (a Python project), an npm "lint" script, go.mod, Cargo.toml, a Makefile with a lint target',
    "run_format": 'ruff or black (a Python project), an npm "format" script, go.mod, Cargo.toml, a Makefile with '
    "a format or fmt target",
    "run_build": 'a Python project, an npm "build" script, go.mod, Cargo.toml, a Makefile with a build target',
    "run_typecheck": 'mypy (a Python project), an npm "typecheck" script or tsconfig.json, go.mod, Cargo.toml, '
    "a Makefile with a typecheck target",
}


@dataclass(frozen=True, slots=True)
class Runner:
    """One way to run a check here: its name (pytest, npm, make…) and the exact argv."""

    name: str
    argv: tuple[str, ...]


class _Project:
    """What a directory holds, read once per call: marker files, package.json scripts, Makefile targets."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = any((root / m).is_file() for m in PYTHON_MARKERS)
        self.pyproject = _toml(root / "pyproject.toml")
        self.scripts: dict[str, Any] = {}
        if (root / "package.json").is_file():
            try:
                data = json.loads((root / "package.json").read_text(encoding="utf-8"))
                self.scripts = data.get("scripts") or {} if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self.scripts = {}
        self.go = (root / "go.mod").is_file()
        self.cargo = (root / "Cargo.toml").is_file()
        self.make_targets: set[str] = set()
        for name in MAKEFILES:
            if (root / name).is_file():
                text = (root / name).read_text(encoding="utf-8", errors="replace")
                self.make_targets = set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, re.M))
                break

    def tool_config(self, name: str) -> dict[str, Any]:
        section = self.pyproject.get("tool", {}).get(name)
        return section if isinstance(section, dict) else {}

    def has_config(self, name: str, *files: str) -> bool:
        return name in self.pyproject.get("tool", {}) or any((self.root / f).is_file() for f in files)

    def program(self, name: str) -> str | None:
        """A program from the project's virtualenv first, then PATH, as an absolute path."""
        for venv in (".venv", "venv"):
            candidate = self.root / venv / "bin" / name
            if candidate.is_file() or candidate.is_symlink():
                return str(candidate)
        found = shutil.which(name)
        return str(Path(found).absolute()) if found else None

    def need(self, name: str) -> str:
        found = self.program(name)
        if found is None:
            raise ToolError(f"{name} is not installed: looked in {self.root}/.venv/bin, {self.root}/venv/bin and PATH")
        return found


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, tomllib.TOMLDecodeError):
        return {}


Candidate = tuple[str, Callable[[], tuple[str, ...]]]  # a runner's name, and its argv (raises if not installed)


def _npm(p: _Project, *scripts: str) -> list[Candidate]:
    """The first of `scripts` package.json has, run by npm."""
    script = next((s for s in scripts if s in p.scripts), None)
    if script is None:
        return []
    return [("npm", lambda: (p.need("npm"), "test") if script == "test" else (p.need("npm"), "run", script))]


def _make(p: _Project, *targets: str) -> list[Candidate]:
    """The first of `targets` the Makefile has, run by make."""
    target = next((t for t in targets if t in p.make_targets), None)
    if target is None:
        return []
    return [("make", lambda: (p.need("make"), target))]


def _candidates(kind: str, p: _Project, *, target: str, fix: bool) -> list[Candidate]:
    """Every runner this directory has for `kind`, language-native first, make last."""
    found: list[Candidate] = []
    if kind == "run_tests":
        if p.python:
            found.append(("pytest", lambda: (p.need("pytest"), "-q", *([target] if target else []))))
        found += _npm(p, "test")
        if p.go:
            found.append(("go", lambda: (p.need("go"), "test", *(("-run", target) if target else ()), "./...")))
        if p.cargo:
            found.append(("cargo", lambda: (p.need("cargo"), "test", *([target] if target else []))))
        found += _make(p, "test")
    elif kind == "run_lint":
        if p.python and (p.has_config("ruff", "ruff.toml", ".ruff.toml") or p.program("ruff")):
            found.append(("ruff", lambda: (p.need("ruff"), "check", *(["--fix"] if fix else []), ".")))
        found += _npm(p, "lint")
        if p.go:
            found.append(("go", lambda: (p.need("go"), "vet", "./...")))
        if p.cargo:
            found.append(("cargo", lambda: (p.need("cargo"), "clippy")))
        found += _make(p, "lint")
    elif kind == "run_format":
        if p.python:
            ruff = p.has_config("ruff", "ruff.toml", ".ruff.toml")
            black = p.has_config("black")
            if ruff or (not black and p.program("ruff")):
                found.append(("ruff", lambda: (p.need("ruff"), "format", *([] if fix else ["--check"]), ".")))
            if black or p.program("black"):
                found.append(("black", lambda: (p.need("black"), *([] if fix else ["--check"]), ".")))
        found += _npm(p, "format" if fix else "format:check", "format")
        if p.go:
            found.append(("gofmt", lambda: (p.need("gofmt"), "-w" if fix else "-l", ".")))
        if p.cargo:
            found.append(("cargo", lambda: (p.need("cargo"), "fmt", *([] if fix else ["--check"]))))
        found += _make(p, "format", "fmt")
    elif kind == "run_build":
        found += _npm(p, "build")
        if p.go:
            found.append(("go", lambda: (p.need("go"), "build", "./...")))
        if p.cargo:
            found.append(("cargo", lambda: (p.need("cargo"), "build")))
        if p.python:
            found.append(("python", lambda: (p.program("python") or p.need("python3"), "-m", "compileall", "-q", ".")))
        found += _make(p, "build")
    elif kind == "run_typecheck":
        if p.python and (p.has_config("mypy", "mypy.ini", ".mypy.ini") or p.program("mypy")):
            files = bool(p.tool_config("mypy").get("files")) or (p.root / "mypy.ini").is_file()
            found.append(("mypy", lambda: (p.need("mypy"), *([] if files else ["."]))))
        found += _npm(p, "typecheck", "type-check")
        tsc = p.root / "node_modules" / ".bin" / "tsc"
        if not any(n == "npm" for n, _ in found) and (p.root / "tsconfig.json").is_file() and tsc.exists():
            found.append(("tsc", lambda: (str(tsc), "--noEmit")))
        if p.go:
            found.append(("go", lambda: (p.need("go"), "vet", "./...")))
        if p.cargo:
            found.append(("cargo", lambda: (p.need("cargo"), "check")))
        found += _make(p, "typecheck")
    return found


def detect(kind: str, directory: Path, *, runner: str = "", target: str = "", fix: bool = False) -> Runner:
    """The runner for `kind` in `directory` (the first detected, or the one named), or `ToolError`."""
    found = _candidates(kind, _Project(directory), target=target, fix=fix)
    if not found:
        raise ToolError(f"no {NOUN[kind]} found in {directory}: looked for {LOOKED_FOR[kind]}")
    if runner:
        chosen = [c for c in found if c[0] == runner]
        if not chosen:
            names = ", ".join(dict.fromkeys(n for n, _ in found))
            raise ToolError(f"runner {runner!r} is not set up in {directory} for {kind}; found here: {names}")
        found = chosen
    name, argv = found[0]
    return Runner(name, argv())


def _summary(output: str, status: int | None) -> str:
    for line in reversed(output.splitlines()):
        for pattern in _SUMMARY:
            if m := pattern.match(line.strip()):
                return m.group(1)
    return f"exit status {status}"


def qa_tools(policy: Policy, *, timeout: float = 600.0) -> list[ToolSpec]:
    """The five QA tools, confined to the policy's file roots."""

    def directory(path: str) -> Path:
        where = policy.resolve_path(path)
        if not where.is_dir():
            if where.exists():
                raise ToolError(f"{where} is not a directory: give the project's directory (list_directory shows it)")
            raise ToolError(f"{where} does not exist; find the project with list_directory or search_files")
        return where

    def check_target(where: Path, target: str) -> str:
        target = target.strip()
        if not target:
            return ""
        if target.startswith("-") or not _TARGET.match(target):
            raise ToolError(
                f"target {target!r} is not a test path or name (no options, no spaces): for example "
                "tests/test_app.py or tests/test_app.py::test_name"
            )
        file_part = target.split("::", 1)[0]
        if ("/" in file_part or file_part.endswith(".py")) and not (where / file_part).exists():
            raise ToolError(
                f"{file_part} does not exist in {where}; find the right test file with search_files or "
                f"list_directory, then call run_tests again"
            )
        return target

    def planned(kind: str, args: dict[str, Any]) -> tuple[Path, Runner]:
        where = directory(args["path"])
        target = check_target(where, args.get("target", "")) if kind == "run_tests" else ""
        return where, detect(kind, where, runner=args.get("runner", ""), target=target, fix=args.get("fix", False))

    def parts(where: Path, found: Runner) -> tuple[str, ...]:
        return (str(where), canonical_json(list(found.argv)))

    async def run(kind: str, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        where, found = planned(kind, args)
        if not ctx.approved:
            raise PolicyError(f"{kind} runs the project's code: it needs a person's approval first; it was not run")
        ctx.check_unchanged(parts(where, found))
        result = await run_process(
            list(found.argv), cwd=str(where), env=scrubbed_env(), timeout=timeout,
            output_cap=policy.config.output_cap * 4,
        )  # fmt: skip
        body = result.combined() or "(no output)"
        if result.timed_out:
            head = f"timed out after {timeout:g} s and was killed"
        elif result.not_found:
            head = f"{found.argv[0]} could not be started (not found)"
        else:
            head = f"{'passed' if result.ok else 'FAILED'}: {_summary(body, result.exit_status)}"
        lines = [f"$ {shlex.join(found.argv)}", f"(in {where}, {found.name})", head]
        body, _ = policy.cap(body)
        lines.append(body)
        target = args.get("target", "")
        if kind == "run_tests" and target and found.name == "pytest" and result.exit_status in (4, 5):
            lines.append(NO_MATCH_HINT.format(target=target))
        lines.append(f"[exit status {result.exit_status}]" if not result.timed_out else "[timed out]")
        return ToolOutput("\n".join(lines), result.ok, result.exit_status)

    def make(kind: str, fn: Any) -> ToolSpec:
        spec: ToolSpec = tool(risk=Risk.EXEC, name=kind)(fn)

        @spec.plan
        async def _plan(args: dict[str, Any]) -> Plan:
            where, found = planned(kind, args)
            shown = shlex.join(found.argv)
            return Plan(
                risk=Risk.EXEC,
                summary=(
                    f"{kind} in {where}: {shown} (approving also lets this exact command run again in this "
                    "directory later in this run without asking)"
                ),
                detail=shown,
                detail_kind="argv",
                fingerprint_parts=parts(where, found),
                reuse=True,
            )

        @spec.check_fresh
        async def _fresh(args: dict[str, Any]) -> tuple[str, ...]:
            return parts(*planned(kind, args))

        return spec

    async def run_tests(path: str, target: str = "", runner: str = "", *, ctx: ToolContext) -> ToolOutput:
        """Run the project's tests (pytest, npm test, go test, cargo test or make test, found in the directory).
        A person approves the exact command once per run; the output ends with the failures.

        Args:
            path: the project's directory.
            target: optional: one test file, directory or test id (tests/test_app.py::test_name; for go and
                cargo a test name filter).
            runner: optional: force one of the runners found there (pytest, npm, go, cargo, make).
        """
        return await run("run_tests", {"path": path, "target": target, "runner": runner}, ctx)

    async def run_lint(path: str, fix: bool = False, runner: str = "", *, ctx: ToolContext) -> ToolOutput:
        """Run the project's linter (ruff check, npm run lint, go vet, cargo clippy or make lint).

        Args:
            path: the project's directory.
            fix: let ruff fix what it can (ruff check --fix); other linters only report.
            runner: optional: force one of the runners found there (ruff, npm, go, cargo, make).
        """
        return await run("run_lint", {"path": path, "fix": fix, "runner": runner}, ctx)

    async def run_format(path: str, fix: bool = False, runner: str = "", *, ctx: ToolContext) -> ToolOutput:
        """Check the project's formatting (ruff format --check, black --check, gofmt -l, cargo fmt --check, npm
        run format:check, make format); with fix, rewrite the files instead.

        Args:
            path: the project's directory.
            fix: rewrite the files (ruff format, black, gofmt -w, cargo fmt) instead of only checking.
            runner: optional: force one of the formatters found there (ruff, black, gofmt, cargo, npm, make).
        """
        return await run("run_format", {"path": path, "fix": fix, "runner": runner}, ctx)

    async def run_build(path: str, runner: str = "", *, ctx: ToolContext) -> ToolOutput:
        """Build the project (npm run build, go build, cargo build, python -m compileall, make build).

        Args:
            path: the project's directory.
            runner: optional: force one of the builds found there (npm, go, cargo, python, make).
        """
        return await run("run_build", {"path": path, "runner": runner}, ctx)

    async def run_typecheck(path: str, runner: str = "", *, ctx: ToolContext) -> ToolOutput:
        """Type-check the project (mypy, npm run typecheck, tsc --noEmit, go vet, cargo check, make typecheck).

        Args:
            path: the project's directory.
            runner: optional: force one of the checkers found there (mypy, npm, tsc, go, cargo, make).
        """
        return await run("run_typecheck", {"path": path, "runner": runner}, ctx)

    fns = {"run_tests": run_tests, "run_lint": run_lint, "run_format": run_format, "run_build": run_build,
           "run_typecheck": run_typecheck}  # fmt: skip
    assert set(fns) == QA_TOOLS
    return [make(kind, fn) for kind, fn in fns.items()]
