"""The QA tools of a change workflow: `run_tests`, `run_lint`, `run_format`, `run_build`, `run_typecheck`.

Each finds the project's own tooling in the directory it is given (pytest, ruff or black, mypy,
npm scripts, go, cargo, make), by its marker files, and runs it as an exact argv without a shell,
in that directory, with the bot's secrets removed from the environment, a timeout and an output
cap. Running a project's tests runs its code, so every QA tool is an `exec` a person approves,
with the argv shown; the plan is `reuse`, so one approval covers the same command in the same
directory for the rest of the run (the fix-and-verify cycles of `core.workflow`). The body runs
only when approved.

Python tools are looked up in the project's own `.venv/bin` or `venv/bin` first, then on PATH;
every program is shown as an absolute path, so the argv approved is the argv run. A test target
that names a file that does not exist is refused with a hint to search for it, and a run in
which no test matched the target says so, so the model corrects itself instead of stopping.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.errors import ToolError
from core.events import Risk
from core.policy import Policy, PolicyError
from core.process import ProcessResult, run_process
from core.tools.command import scrubbed_env
from core.tools.registry import Plan, ToolContext, ToolOutput, ToolSpec, canonical_json, tool
from core.workflow import QA_TOOLS

__all__ = ["QA_TOOLS", "Runner", "detect", "qa_tools"]

# ---- what the model reads (the summary line also goes to the approver) ----------------------
NO_SUCH_DIRECTORY = (
    "{path} does not exist: find the project's directory with list_directory or search_files, then call {tool} again"
)
NOT_A_DIRECTORY = (
    "{path} is not a directory: give the project's top directory (list_directory shows what is there); "
    "to run one test file, pass it as run_tests' target"
)
NOTHING_FOUND = (
    "no {noun} found in {directory}: looked for {looked_for}. If the project is in a subdirectory, "
    "list_directory shows it"
)
NOT_INSTALLED = "{program} is not installed: looked {where}"
ALSO_FOUND = "; also found here: {names} (pass runner=... to use one)"
UNKNOWN_RUNNER = "runner {runner!r} is not set up in {directory} for {tool}; found here: {names}"
BAD_TARGET = (
    "target {target!r} is refused: {why}. Give a test file, directory or id, for example tests/test_app.py "
    "or tests/test_app.py::test_name"
)
NO_TARGET = (
    "{runner} runs the whole suite here and takes no target: call run_tests without a target "
    "(a target works with pytest, go and cargo)"
)
MISSING_TARGET = (
    "{path} does not exist in {directory}: find the right test file with search_files (the test's name) "
    "or list_directory, then call run_tests again with that target"
)
NO_MATCH_HINT = (
    "hint: no test matched {target!r}. Find the test's real name with search_files (its name, or "
    "'def test_'), then call run_tests again with the right target."
)
NEEDS_APPROVAL = "{tool} runs the project's code: it needs a person's approval first; it was not run"
REUSE_NOTE = "approving also lets this exact command run again in this directory later in this run without asking"
FIX_IGNORED = "fix works with ruff only: {runner} only reports"
MAY_REWRITE = "there is no check-only {what}: this may rewrite files"
TIMED_OUT = (
    "timed out after {timeout:g} s and was killed (ORCHESTRATOR_QA_TIMEOUT); try a narrower target, "
    "or ask the operator for more time"
)
NOT_STARTED = "{program} could not be started ({why}); check that it is installed, then call {tool} again"
HEAD_ONLY = "(the output was longer than {cap} characters: only its beginning was kept, the end is lost)"
UNFORMATTED = "{n} file(s) need formatting (listed above)"

PYTHON_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "pytest.ini", "tox.ini", "requirements.txt")
MAKEFILES = ("GNUmakefile", "makefile", "Makefile")  # the order GNU make reads them in
VENVS = (".venv", "venv")
RUFF_CONFIGS = ("ruff.toml", ".ruff.toml")
# compileall walks everything under "."; a virtualenv's or node_modules' files are not the project's
NOT_THE_PROJECT = r"/(\.venv|venv|\.tox|\.nox|node_modules|\.git)/"

_MAKE_RULE = re.compile(r"^([^\s:#=][^:#=]*?)\s*::?(?![:=])", re.M)
_MAKE_NAME = re.compile(r"^[\w.-]+$")
_SUMMARY = (
    re.compile(r"^=*\s*(\d+ (?:passed|failed|errors?|skipped|deselected|xfailed)\b.* in [\d.]+s\S*)\s*=*$"),  # pytest
    re.compile(r"^=*\s*(no tests ran in [\d.]+s)\s*=*$"),  # pytest
    re.compile(r"^(Found \d+ errors?.*)$"),  # ruff, mypy
    re.compile(r"^(Success: no issues found.*)$"),  # mypy
    re.compile(r"^(All checks passed!)$"),  # ruff
    re.compile(r"^(\d+ files? (?:would be )?(?:reformatted|left unchanged).*)$"),  # ruff format, black
    re.compile(r"^(test result: .*)$"),  # cargo
)
_CARGO_RAN = re.compile(r"^running (\d+) tests?$", re.M)
_GO_PACKAGE_OK = re.compile(r"^ok\s.*$", re.M)


@dataclass(frozen=True, slots=True)
class Runner:
    """One way to run a check here: its name (pytest, npm, make…), the exact argv, and what to know of it.

    `note` is said in the plan and the output (a `fix` the runner ignores); `fails_on_output` is
    for a check that exits 0 and lists what is wrong (`gofmt -l`)."""

    name: str
    argv: tuple[str, ...]
    note: str = ""
    fails_on_output: bool = False


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A runner this directory has, before its program is looked up."""

    name: str  # what `runner=` names
    program: str  # a name to look up, or an absolute path (the project's own tsc)
    args: tuple[str, ...]
    python: bool = False  # a Python tool: the project's virtualenv first
    on_path: str = ""  # the name on PATH when it differs from the virtualenv's (python → python3)
    takes_target: bool = False
    note: str = ""
    fails_on_output: bool = False


@dataclass(frozen=True, slots=True)
class _Options:
    target: str = ""
    fix: bool = False


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _ini_section(path: Path, section: str) -> dict[str, str] | None:
    if not path.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(encoding="utf-8", errors="replace"))
    except configparser.Error:
        return {}
    return dict(parser[section]) if parser.has_section(section) else None


class _Project:
    """What a directory holds, read once per call: marker files, package.json scripts, Makefile targets.

    The reads are of small files and cheap enough for the event loop."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = any((root / m).is_file() for m in PYTHON_MARKERS)
        tool_table = _toml(root / "pyproject.toml").get("tool")
        self.tool: dict[str, Any] = tool_table if isinstance(tool_table, dict) else {}
        self.go = (root / "go.mod").is_file()
        self.cargo = (root / "Cargo.toml").is_file()
        self.scripts: dict[str, Any] = {}
        if (root / "package.json").is_file():
            try:
                data = json.loads((root / "package.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            scripts = data.get("scripts") if isinstance(data, dict) else None
            self.scripts = scripts if isinstance(scripts, dict) else {}
        self.make_targets: set[str] = set()
        for name in MAKEFILES:
            if (root / name).is_file():
                text = (root / name).read_text(encoding="utf-8", errors="replace")
                names = (n for m in _MAKE_RULE.finditer(text) for n in m.group(1).split())
                self.make_targets = {n for n in names if _MAKE_NAME.match(n)}
                break

    def configured(self, name: str, *files: str) -> bool:
        """Configured in pyproject.toml's [tool.NAME], or by a file of its own."""
        return name in self.tool or any((self.root / f).is_file() for f in files)

    def mypy(self) -> tuple[bool, bool]:
        """Whether mypy is configured here, and whether its configuration names the files to check."""
        for name in ("mypy.ini", ".mypy.ini"):
            section = _ini_section(self.root / name, "mypy")
            if section is not None:
                return True, bool(section.get("files"))
        if isinstance(self.tool.get("mypy"), dict):
            return True, bool(self.tool["mypy"].get("files"))
        section = _ini_section(self.root / "setup.cfg", "mypy")
        if section is not None:
            return True, bool(section.get("files"))
        return False, False

    def locate(self, c: _Candidate) -> str | None:
        """The candidate's program as an absolute path: the project's virtualenv first for a Python tool."""
        if os.path.isabs(c.program):
            return c.program if _executable(Path(c.program)) else None
        if c.python:
            for venv in VENVS:
                candidate = self.root / venv / "bin" / c.program
                if _executable(candidate):
                    return str(candidate)
        found = shutil.which(c.on_path or c.program)
        return os.path.abspath(found) if found else None

    def looked(self, c: _Candidate) -> str:
        if os.path.isabs(c.program):
            return f"at {c.program}"
        on_path = f"{c.on_path} on PATH" if c.on_path else "on PATH"
        if c.python:
            return " and ".join([", ".join(f"in {self.root / v / 'bin'}" for v in VENVS), on_path])
        return on_path


def _npm(p: _Project, *scripts: str, note: str = "") -> list[_Candidate]:
    """The first of `scripts` package.json has, run by npm."""
    script = next((s for s in scripts if s in p.scripts), None)
    if script is None:
        return []
    return [_Candidate("npm", "npm", ("test",) if script == "test" else ("run", script), note=note)]


def _make(p: _Project, *targets: str, note: str = "") -> list[_Candidate]:
    """The first of `targets` the Makefile has, run by make: the fallback, after every native runner."""
    target = next((t for t in targets if t in p.make_targets), None)
    return [_Candidate("make", "make", (target,), note=note)] if target else []


def _tests(p: _Project, o: _Options) -> list[_Candidate]:
    t = (o.target,) if o.target else ()
    found: list[_Candidate] = []
    if p.python:
        found.append(_Candidate("pytest", "pytest", ("-q", *t), python=True, takes_target=True))
    found += _npm(p, "test")
    if p.go:
        run = ("-run", o.target) if o.target else ()
        found.append(_Candidate("go", "go", ("test", *run, "./..."), takes_target=True))
    if p.cargo:
        found.append(_Candidate("cargo", "cargo", ("test", *t), takes_target=True))
    return found + _make(p, "test")


def _lint(p: _Project, o: _Options) -> list[_Candidate]:
    found: list[_Candidate] = []
    ruff = _Candidate("ruff", "ruff", ("check", *(("--fix",) if o.fix else ()), "."), python=True)
    if p.python and (p.configured("ruff", *RUFF_CONFIGS) or p.locate(ruff)):
        found.append(ruff)
    found += _npm(p, "lint")
    if p.go:
        found.append(_Candidate("go", "go", ("vet", "./...")))
    if p.cargo:
        found.append(_Candidate("cargo", "cargo", ("clippy",)))
    found += _make(p, "lint")
    if not o.fix:
        return found
    return [c if c.name == "ruff" else replace(c, note=FIX_IGNORED.format(runner=c.name)) for c in found]


def _format(p: _Project, o: _Options) -> list[_Candidate]:
    check = () if o.fix else ("--check",)
    found: list[_Candidate] = []
    if p.python:
        ruff = _Candidate("ruff", "ruff", ("format", *check, "."), python=True)
        black = _Candidate("black", "black", (*check, "."), python=True)
        has_black = p.configured("black") or p.locate(black) is not None
        # ruff when configured; else black when configured or installed; else ruff when installed
        if p.configured("ruff", *RUFF_CONFIGS):
            found += [ruff, *([black] if has_black else [])]
        elif has_black:
            found += [black, *([ruff] if p.locate(ruff) else [])]
        elif p.locate(ruff):
            found.append(ruff)
    if o.fix:
        found += _npm(p, "format")
    else:
        found += _npm(p, "format:check") or _npm(p, "format", note=MAY_REWRITE.format(what='npm "format:check" script'))
    if p.go:
        found.append(_Candidate("go", "gofmt", ("-w" if o.fix else "-l", "."), fails_on_output=not o.fix))
    if p.cargo:
        found.append(_Candidate("cargo", "cargo", ("fmt", *check)))
    if o.fix:
        return found + _make(p, "format", "fmt")
    checks = _make(p, "format-check", "check-format", "fmt-check")
    return found + (checks or _make(p, "format", "fmt", note=MAY_REWRITE.format(what="make target")))


def _build(p: _Project, o: _Options) -> list[_Candidate]:
    # compileall last among the native builds: in a mixed project it is only a syntax check
    found = _npm(p, "build")
    if p.go:
        found.append(_Candidate("go", "go", ("build", "./...")))
    if p.cargo:
        found.append(_Candidate("cargo", "cargo", ("build",)))
    if p.python:
        # -f: compileall otherwise skips a file whose .pyc has the same mtime second, even if it changed
        args = ("-m", "compileall", "-q", "-f", "-x", NOT_THE_PROJECT, ".")
        found.append(_Candidate("python", "python", args, python=True, on_path="python3"))
    return found + _make(p, "build")


def _typecheck(p: _Project, o: _Options) -> list[_Candidate]:
    found: list[_Candidate] = []
    if p.python:
        configured, names_files = p.mypy()
        mypy = _Candidate("mypy", "mypy", () if names_files else (".",), python=True)
        if configured or p.locate(mypy):
            found.append(mypy)
    found += _npm(p, "typecheck", "type-check")
    tsc = p.root / "node_modules" / ".bin" / "tsc"
    if (p.root / "tsconfig.json").is_file() and _executable(tsc):
        found.append(_Candidate("tsc", str(tsc), ("--noEmit",)))
    if p.go:
        found.append(_Candidate("go", "go", ("vet", "./...")))
    if p.cargo:
        found.append(_Candidate("cargo", "cargo", ("check",)))
    return found + _make(p, "typecheck")


@dataclass(frozen=True, slots=True)
class _Check:
    noun: str
    looked_for: str
    candidates: Callable[[_Project, _Options], list[_Candidate]]  # language-native first, make last


_PYTHON = "pyproject.toml, setup.py, setup.cfg, pytest.ini, tox.ini or requirements.txt"
CHECKS: dict[str, _Check] = {
    "run_tests": _Check(
        "test runner",
        f'pytest (a Python project: {_PYTHON}), an npm "test" script, go.mod, Cargo.toml and a Makefile '
        "with a test target",
        _tests,
    ),
    "run_lint": _Check(
        "linter",
        'ruff (configured or installed, in a Python project), an npm "lint" script, go.mod, Cargo.toml '
        "and a Makefile with a lint target",
        _lint,
    ),
    "run_format": _Check(
        "formatter",
        'ruff or black (configured or installed, in a Python project), an npm "format" script, go.mod, '
        "Cargo.toml and a Makefile with a format or fmt target",
        _format,
    ),
    "run_build": _Check(
        "build",
        f'an npm "build" script, go.mod, Cargo.toml, a Python project ({_PYTHON}) and a Makefile with a build target',
        _build,
    ),
    "run_typecheck": _Check(
        "type checker",
        'mypy (configured or installed, in a Python project), an npm "typecheck" script, tsconfig.json '
        "with node_modules/.bin/tsc, go.mod, Cargo.toml and a Makefile with a typecheck target",
        _typecheck,
    ),
}
assert set(CHECKS) == QA_TOOLS


def detect(kind: str, directory: Path, *, runner: str = "", target: str = "", fix: bool = False) -> Runner:
    """The runner for the QA tool `kind` in `directory` (the first detected, or the one named), or `ToolError`."""
    check = CHECKS[kind]
    project = _Project(directory)
    found = check.candidates(project, _Options(target=target, fix=fix))
    if not found:
        raise ToolError(NOTHING_FOUND.format(noun=check.noun, directory=directory, looked_for=check.looked_for))
    names = list(dict.fromkeys(c.name for c in found))
    chosen = found[0]
    if runner.strip():
        wanted = runner.strip().lower()
        named = [c for c in found if wanted in (c.name, os.path.basename(c.program))]
        if not named:
            shown = ", ".join(names)
            raise ToolError(UNKNOWN_RUNNER.format(runner=runner, directory=directory, tool=kind, names=shown))
        chosen = named[0]
    if target and not chosen.takes_target:
        raise ToolError(NO_TARGET.format(runner=chosen.name))
    program = project.locate(chosen)
    if program is None:
        shown = chosen.program if not chosen.on_path else f"{chosen.program} (or {chosen.on_path})"
        text = NOT_INSTALLED.format(program=shown, where=project.looked(chosen))
        others = [n for n in names if n != chosen.name]
        raise ToolError(text + (ALSO_FOUND.format(names=", ".join(others)) if others and not runner else ""))
    return Runner(chosen.name, (program, *chosen.args), chosen.note, chosen.fails_on_output)


def _target(raw: str) -> str:
    """The target as an argv element, or `ToolError`: never an option, one line."""
    target = raw.strip()
    if target.startswith("-"):
        raise ToolError(BAD_TARGET.format(target=target, why="it starts with '-' (options cannot be passed)"))
    if any(ch in target for ch in "\x00\n\r"):
        raise ToolError(BAD_TARGET.format(target=target, why="it contains a NUL byte or a line break"))
    return target


def _summary(output: str, status: int | None) -> str:
    """The tool's own one-line verdict (pytest's counts, ruff's or mypy's "Found N errors"), from the end."""
    for line in reversed(output.splitlines()):
        for pattern in _SUMMARY:
            if m := pattern.match(line.strip()):
                return m.group(1)
    return f"exit status {status}"


def _nothing_matched(found: Runner, output: str, status: int | None) -> bool:
    """A run with a target in which no test matched it (pytest exits 4 or 5; go and cargo pass with none)."""
    if found.name == "pytest":
        return status in (4, 5)
    if found.name == "go":
        packages = _GO_PACKAGE_OK.findall(output)
        return bool(packages) and all("[no tests to run]" in line for line in packages)
    if found.name == "cargo":
        ran = _CARGO_RAN.findall(output)
        return bool(ran) and all(n == "0" for n in ran)
    return False


def qa_tools(policy: Policy, *, timeout: float = 600.0) -> list[ToolSpec]:
    """The five QA tools, confined to the policy's file roots; each command is killed after `timeout` s."""

    def directory(kind: str, path: str) -> Path:
        where = policy.resolve_path(path)
        if not where.is_dir():
            text = NOT_A_DIRECTORY if where.exists() else NO_SUCH_DIRECTORY
            raise ToolError(text.format(path=where, tool=kind))
        return where

    def planned(kind: str, args: dict[str, Any]) -> tuple[Path, Runner]:
        """The directory and the runner as they are now: the plan, the fresh check and the body all ask this."""
        where = directory(kind, args["path"])
        target = _target(args.get("target", ""))
        found = detect(kind, where, runner=args.get("runner", ""), target=target, fix=args.get("fix", False))
        if target and found.name == "pytest":
            named = target.split("::", 1)[0]
            if not policy.resolve_path(where / named).exists():  # outside the roots is refused, too
                raise ToolError(MISSING_TARGET.format(path=named, directory=where))
        return where, found

    def parts(where: Path, found: Runner) -> tuple[str, ...]:
        return (str(where), canonical_json(list(found.argv)))  # core.agent reads the directory first

    def report(kind: str, where: Path, found: Runner, target: str, result: ProcessResult) -> ToolOutput:
        output = result.combined()
        ok = result.ok
        if result.timed_out:
            verdict = TIMED_OUT.format(timeout=timeout)
        elif result.exit_status is None:
            verdict = NOT_STARTED.format(program=found.argv[0], why=result.stderr.strip(), tool=kind)
            output = ""
        elif found.fails_on_output and result.stdout.strip():
            ok = False
            verdict = f"FAILED: {UNFORMATTED.format(n=len(result.stdout.strip().splitlines()))}"
        else:
            verdict = f"{'passed' if ok else 'FAILED'}: {_summary(output, result.exit_status)}"
        head = [f"$ {shlex.join(found.argv)}", f"(in {where}, runner {found.name})", verdict]
        if found.note:
            head.append(f"note: {found.note}")
        tail: list[str] = []
        if result.truncated:
            tail.append(HEAD_ONLY.format(cap=policy.config.output_cap * 4))
        if target and not result.timed_out and _nothing_matched(found, output, result.exit_status):
            tail.append(NO_MATCH_HINT.format(target=target))
        tail.append("[timed out]" if result.timed_out else f"[exit status {result.exit_status}]")
        # the agent caps the whole text at output_cap: cut the output here, keeping its end (the failures)
        room = policy.config.output_cap - len("\n".join(head + tail)) - 64
        body, _ = policy.cap(output or "(no output)", max(room, 1000))
        return ToolOutput("\n".join([*head, body, *tail]), ok, result.exit_status)

    async def run(kind: str, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        where, found = planned(kind, args)
        if not ctx.approved:
            raise PolicyError(NEEDS_APPROVAL.format(tool=kind))
        ctx.check_unchanged(parts(where, found))
        result = await run_process(
            list(found.argv), cwd=str(where), env=scrubbed_env(), timeout=timeout,
            output_cap=policy.config.output_cap * 4,
        )  # fmt: skip
        return report(kind, where, found, args.get("target", "").strip(), result)

    def with_hooks(spec: ToolSpec) -> ToolSpec:
        kind = spec.name

        @spec.plan
        async def _plan(args: dict[str, Any]) -> Plan:
            where, found = planned(kind, args)
            shown = shlex.join(found.argv)
            notes = "; ".join(n for n in (found.note, REUSE_NOTE) if n)
            return Plan(
                risk=Risk.EXEC,
                summary=f"{kind} in {where}: {shown} ({notes})",
                detail=shown,
                detail_kind="argv",
                fingerprint_parts=parts(where, found),
                reuse=True,
            )

        @spec.check_fresh
        async def _fresh(args: dict[str, Any]) -> tuple[str, ...]:
            return parts(*planned(kind, args))  # a changed detection (another pytest, a new marker) is refused

        return spec

    @tool(risk=Risk.EXEC)
    async def run_tests(path: str, *, target: str = "", runner: str = "", ctx: ToolContext) -> ToolOutput:
        """Run the project's tests (pytest, npm test, go test, cargo test or make test, found in the directory).
        A person approves the exact command once per run; the output ends with the failures.

        Args:
            path: the project's top directory.
            target: optional: one test file, directory or test id (tests/test_app.py::test_name); for go and
                cargo a test name filter. Leave empty to run every test.
            runner: optional: force one of the runners found there (pytest, npm, go, cargo, make).
        """
        return await run("run_tests", {"path": path, "target": target, "runner": runner}, ctx)

    @tool(risk=Risk.EXEC)
    async def run_lint(path: str, *, fix: bool = False, runner: str = "", ctx: ToolContext) -> ToolOutput:
        """Run the project's linter (ruff check, npm run lint, go vet, cargo clippy or make lint).

        Args:
            path: the project's top directory.
            fix: let ruff fix what it can (ruff check --fix); other linters only report.
            runner: optional: force one of the linters found there (ruff, npm, go, cargo, make).
        """
        return await run("run_lint", {"path": path, "fix": fix, "runner": runner}, ctx)

    @tool(risk=Risk.EXEC)
    async def run_format(path: str, *, fix: bool = False, runner: str = "", ctx: ToolContext) -> ToolOutput:
        """Check the project's formatting (ruff format --check, black --check, gofmt -l, cargo fmt --check,
        npm run format:check, make format); with fix, rewrite the files instead.

        Args:
            path: the project's top directory.
            fix: rewrite the files (ruff format, black, gofmt -w, cargo fmt) instead of only checking.
            runner: optional: force one of the formatters found there (ruff, black, go, cargo, npm, make).
        """
        return await run("run_format", {"path": path, "fix": fix, "runner": runner}, ctx)

    @tool(risk=Risk.EXEC)
    async def run_build(path: str, *, runner: str = "", ctx: ToolContext) -> ToolOutput:
        """Build the project (npm run build, go build, cargo build, python -m compileall, make build).

        Args:
            path: the project's top directory.
            runner: optional: force one of the builds found there (npm, go, cargo, python, make).
        """
        return await run("run_build", {"path": path, "runner": runner}, ctx)

    @tool(risk=Risk.EXEC)
    async def run_typecheck(path: str, *, runner: str = "", ctx: ToolContext) -> ToolOutput:
        """Type-check the project (mypy, npm run typecheck, tsc --noEmit, go vet, cargo check, make typecheck).

        Args:
            path: the project's top directory.
            runner: optional: force one of the checkers found there (mypy, npm, tsc, go, cargo, make).
        """
        return await run("run_typecheck", {"path": path, "runner": runner}, ctx)

    return [with_hooks(spec) for spec in (run_tests, run_lint, run_format, run_build, run_typecheck)]
