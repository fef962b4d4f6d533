"""The QA tools on real projects: what each detects (the exact argv the approver sees), real runs of
pytest, ruff, mypy, compileall, cargo and make in the project's directory, and the refusals the
model reads. go is not installed here: small shell stand-ins for `go` and `gofmt`, put first on
PATH, play the toolchain where a test needs one."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from core.errors import ModelFacingError
from core.events import Risk
from core.policy import Policy, PolicyConfig
from core.tools.qa import QA_TOOLS, qa_tools
from core.tools.registry import Plan, ToolContext, ToolOutput, ToolSpec, canonical_json
from tests.core.tools.conftest import REQUESTER, invoke, run_approved

BIN = Path(sys.executable).parent  # the venv running these tests: pytest, ruff and mypy live here
TESTS = "from mod import one\n\n\ndef test_ok():\n    assert one() == 1\n\n\ndef test_bad():\n    assert one() == 2\n"


@pytest.fixture
def qa(policy: Policy) -> dict[str, ToolSpec]:
    return {spec.name: spec for spec in qa_tools(policy, timeout=120)}


def python_project(root: Path, *, tools: tuple[str, ...] = ("pytest",), pyproject: str = "", name: str = "py") -> Path:
    """A Python project with a passing and a failing test, `tools` linked into its own .venv/bin."""
    app = root / name
    (app / "tests").mkdir(parents=True)
    (app / "pyproject.toml").write_text(pyproject or '[tool.pytest.ini_options]\npythonpath = ["."]\n')
    (app / "mod.py").write_text("def one() -> int:\n    return 1\n")
    (app / "tests" / "test_mod.py").write_text(TESTS)
    (app / ".venv" / "bin").mkdir(parents=True)
    for tool_name in tools:
        (app / ".venv" / "bin" / tool_name).symlink_to(BIN / tool_name)
    return app


def project(root: Path, name: str, files: dict[str, str]) -> Path:
    where = root / name
    where.mkdir()
    for rel, text in files.items():
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_text(text)
    return where


def stand_in(directory: Path, name: str, script: str) -> Path:
    """An executable shell script playing a program that is not installed here."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


async def plan_of(spec: ToolSpec, **args: Any) -> Plan:
    return await spec.make_plan(spec.validate(args))


async def argv(spec: ToolSpec, **args: Any) -> list[str]:
    return list(json.loads((await plan_of(spec, **args)).fingerprint_parts[1]))


def test_the_five_tools_and_their_parameters(qa: dict[str, ToolSpec]) -> None:
    assert set(qa) == QA_TOOLS == {"run_tests", "run_lint", "run_format", "run_build", "run_typecheck"}
    params = {name: spec.schema["function"]["parameters"] for name, spec in qa.items()}
    assert all(p["required"] == ["path"] and {"path", "runner"} <= set(p["properties"]) for p in params.values())
    assert "target" in params["run_tests"]["properties"] and "fix" in params["run_lint"]["properties"]
    assert "fix" in params["run_format"]["properties"] and "target" not in params["run_build"]["properties"]
    assert all(spec.risk is Risk.EXEC and spec.plan_fn and spec.fresh_fn for spec in qa.values())
    assert all(p["properties"]["path"]["description"] for p in params.values())  # the model reads Args:


# ---- the plan -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_plan_shows_the_exact_argv_and_is_reusable(qa: dict[str, ToolSpec], workspace: Path) -> None:
    app = python_project(workspace)
    args = qa["run_tests"].validate({"path": str(app)})
    plan = await qa["run_tests"].make_plan(args)
    pytest_bin = str(app / ".venv" / "bin" / "pytest")
    assert plan.risk is Risk.EXEC and plan.detail_kind == "argv" and plan.reuse
    assert plan.detail == f"{pytest_bin} -q"
    assert plan.summary.startswith(f"run_tests in {app}: {pytest_bin} -q")
    assert "run again in this directory later in this run without asking" in plan.summary
    assert plan.fingerprint_parts == (str(app), canonical_json([pytest_bin, "-q"]))
    assert await qa["run_tests"].fresh_parts(args) == plan.fingerprint_parts
    (app / ".venv" / "bin" / "pytest").unlink()  # detection changes: the approval no longer holds
    if shutil.which("pytest") is None:
        with pytest.raises(ModelFacingError, match="pytest is not installed"):
            await qa["run_tests"].fresh_parts(args)
    else:
        changed = await qa["run_tests"].fresh_parts(args)
        assert changed[0] == str(app) and changed != plan.fingerprint_parts


@pytest.mark.asyncio
async def test_the_body_needs_an_approval(qa: dict[str, ToolSpec], workspace: Path) -> None:
    app = python_project(workspace)
    args = qa["run_tests"].validate({"path": str(app)})
    plan = await qa["run_tests"].make_plan(args)
    with pytest.raises(ModelFacingError, match="needs a person's approval first; it was not run"):
        await qa["run_tests"].run(args, ToolContext(request=REQUESTER, plan=plan))
    assert not list(app.rglob(".pytest_cache")) and not list(app.rglob("__pycache__"))  # nothing ran


@pytest.mark.asyncio
async def test_a_changed_detection_between_plan_and_run_is_not_run(qa: dict[str, ToolSpec], workspace: Path) -> None:
    app = python_project(workspace)
    args = qa["run_tests"].validate({"path": str(app)})
    plan = await qa["run_tests"].make_plan(args)
    stand_in(app / "venv" / "bin", "pytest", "exit 0\n")  # .venv still wins: unchanged
    assert (await run_approved(qa["run_tests"], args, plan)).exit_status == 1
    (app / ".venv" / "bin" / "pytest").unlink()  # now venv/bin/pytest would run instead
    with pytest.raises(ModelFacingError, match="changed after the approval"):
        await qa["run_tests"].run(args, ToolContext(request=REQUESTER, plan=plan, approval_id=1))


# ---- pytest ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_pytest_runs_and_says_what_failed(qa: dict[str, ToolSpec], workspace: Path) -> None:
    app = python_project(workspace)
    out = await invoke(qa["run_tests"], path=str(app))
    assert isinstance(out, ToolOutput) and not out.ok and out.exit_status == 1
    first, second, verdict = out.text.splitlines()[:3]
    assert first == f"$ {app}/.venv/bin/pytest -q" and second == f"(in {app}, runner pytest)"
    assert verdict.startswith("FAILED: 1 failed, 1 passed in ")
    assert "assert 1 == 2" in out.text and out.text.endswith("[exit status 1]")

    ok = await invoke(qa["run_tests"], path=str(app), target="tests/test_mod.py::test_ok")
    assert ok.ok and ok.exit_status == 0 and "passed: 1 passed" in ok.text and "hint" not in ok.text


@pytest.mark.asyncio
async def test_a_test_name_that_matches_nothing_says_how_to_find_it(qa: dict[str, ToolSpec], workspace: Path) -> None:
    app = python_project(workspace)
    out = await invoke(qa["run_tests"], path=str(app), target="tests/test_mod.py::test_okay")
    assert not out.ok and out.exit_status == 4
    assert "hint: no test matched 'tests/test_mod.py::test_okay'" in out.text
    assert "search_files" in out.text and "call run_tests again with the right target" in out.text


@pytest.mark.asyncio
async def test_a_missing_test_file_is_refused_with_a_search_hint(qa: dict[str, ToolSpec], workspace: Path) -> None:
    app = python_project(workspace)
    with pytest.raises(ModelFacingError) as refused:
        await invoke(qa["run_tests"], path=str(app), target="tests/test_mdo.py::test_ok")
    assert str(refused.value) == (
        f"tests/test_mdo.py does not exist in {app}: find the right test file with search_files (the test's "
        "name) or list_directory, then call run_tests again with that target"
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("-p evil", "starts with '-'"),
        ("--rootdir=/", "starts with '-'"),
        ("tests/test_mod.py\n-p evil", "line break"),
        ("tests/test_mod.py\x00", "NUL byte"),
        ("../../outside.py", "outside the file roots"),
    ],
)
async def test_a_target_is_never_an_option_nor_outside(
    qa: dict[str, ToolSpec], workspace: Path, target: str, why: str
) -> None:
    app = python_project(workspace)
    with pytest.raises(ModelFacingError, match=why):
        await invoke(qa["run_tests"], path=str(app), target=target)


@pytest.mark.asyncio
async def test_a_program_that_cannot_start_is_said_clearly(qa: dict[str, ToolSpec], workspace: Path) -> None:
    app = python_project(workspace, tools=())
    stand_in(app / ".venv" / "bin", "pytest", "").write_text("#!/nonexistent/python\n")  # a venv moved away
    out = await invoke(qa["run_tests"], path=str(app))
    assert not out.ok and out.exit_status is None
    assert f"{app}/.venv/bin/pytest could not be started (command not found" in out.text
    assert "check that it is installed, then call run_tests again" in out.text


# ---- ruff, black, mypy, compileall ----------------------------------------------------------


@pytest.mark.asyncio
async def test_ruff_lints_fixes_and_formats(qa: dict[str, ToolSpec], workspace: Path) -> None:
    app = python_project(workspace, tools=("ruff",), pyproject="[tool.ruff]\nline-length = 100\n")
    (app / "mod.py").write_text("import os\n\n\ndef one( ) -> int:\n    return 1\n")
    ruff = str(app / ".venv" / "bin" / "ruff")
    lint = await invoke(qa["run_lint"], path=str(app))
    assert lint.text.startswith(f"$ {ruff} check .\n") and not lint.ok
    assert "FAILED: Found 1 error." in lint.text and "F401" in lint.text
    assert await argv(qa["run_lint"], path=str(app), fix=True) == [ruff, "check", "--fix", "."]
    assert (await invoke(qa["run_lint"], path=str(app), fix=True)).ok
    again = await invoke(qa["run_lint"], path=str(app))
    assert again.ok and "passed: All checks passed!" in again.text and "import os" not in (app / "mod.py").read_text()

    check = await invoke(qa["run_format"], path=str(app))
    assert check.text.startswith(f"$ {ruff} format --check .\n") and not check.ok
    assert "FAILED: 1 file would be reformatted" in check.text
    assert "def one( )" in (app / "mod.py").read_text()  # a check rewrites nothing
    assert (await invoke(qa["run_format"], path=str(app), fix=True)).ok
    assert "def one() -> int:" in (app / "mod.py").read_text()
    assert (await invoke(qa["run_format"], path=str(app))).ok


@pytest.mark.asyncio
async def test_the_formatter_follows_the_configuration(qa: dict[str, ToolSpec], workspace: Path) -> None:
    black_conf = python_project(workspace, tools=("ruff",), pyproject="[tool.black]\n", name="b1")
    black = stand_in(black_conf / ".venv" / "bin", "black", "exit 0\n")
    assert await argv(qa["run_format"], path=str(black_conf)) == [str(black), "--check", "."]
    assert await argv(qa["run_format"], path=str(black_conf), fix=True) == [str(black), "."]
    ruff = str(black_conf / ".venv" / "bin" / "ruff")
    assert await argv(qa["run_format"], path=str(black_conf), runner="ruff") == [ruff, "format", "--check", "."]

    both = python_project(workspace, tools=("ruff",), pyproject="[tool.ruff]\n[tool.black]\n", name="b2")
    stand_in(both / ".venv" / "bin", "black", "exit 0\n")
    assert (await argv(qa["run_format"], path=str(both)))[1:] == ["format", "--check", "."]  # ruff first

    unset = python_project(workspace, tools=("ruff",), pyproject="[project]\nname = 'x'\n", name="b3")
    stand_in(unset / ".venv" / "bin", "black", "exit 0\n")
    assert (await argv(qa["run_format"], path=str(unset)))[1:] == ["--check", "."]  # installed black before ruff

    if shutil.which("black") is None:
        missing = python_project(workspace, tools=(), pyproject="[tool.black]\n", name="b4")
        with pytest.raises(ModelFacingError) as refused:
            await argv(qa["run_format"], path=str(missing))
        assert str(refused.value).startswith(
            f"black is not installed: looked in {missing}/.venv/bin, in {missing}/venv/bin and on PATH"
        )


@pytest.mark.asyncio
async def test_mypy_finds_a_type_error(qa: dict[str, ToolSpec], workspace: Path) -> None:
    app = python_project(workspace, tools=("mypy",), pyproject='[tool.mypy]\nfiles = ["mod.py"]\n')
    mypy = str(app / ".venv" / "bin" / "mypy")
    assert await argv(qa["run_typecheck"], path=str(app)) == [mypy]  # the configuration names the files
    (app / "mod.py").write_text("def one() -> int:\n    return 'one'\n")
    bad = await invoke(qa["run_typecheck"], path=str(app))
    assert not bad.ok and bad.exit_status == 1 and "FAILED: Found 1 error in 1 file" in bad.text
    (app / "mod.py").write_text("def one() -> int:\n    return 1\n")
    good = await invoke(qa["run_typecheck"], path=str(app))
    assert good.ok and "passed: Success: no issues found" in good.text

    plain = python_project(workspace, tools=("mypy",), pyproject="[tool.mypy]\nstrict = true\n", name="plain")
    assert await argv(qa["run_typecheck"], path=str(plain)) == [str(plain / ".venv" / "bin" / "mypy"), "."]
    ini = python_project(workspace, tools=("mypy",), name="ini")
    (ini / "mypy.ini").write_text("[mypy]\nfiles = mod.py\n")
    assert await argv(qa["run_typecheck"], path=str(ini)) == [str(ini / ".venv" / "bin" / "mypy")]


@pytest.mark.asyncio
async def test_a_python_build_compiles_the_project_not_its_venv(qa: dict[str, ToolSpec], workspace: Path) -> None:
    app = python_project(workspace, tools=("python",))
    (app / ".venv" / "lib").mkdir()
    (app / ".venv" / "lib" / "broken.py").write_text("def (:\n")  # not the project's
    found = await argv(qa["run_build"], path=str(app))
    assert found[0] == str(app / ".venv" / "bin" / "python") and found[1:5] == ["-m", "compileall", "-q", "-f"]
    assert found[5] == "-x" and found[-1] == "."
    assert (await invoke(qa["run_build"], path=str(app))).ok
    (app / "mod.py").write_text("def one( -> int:\n")
    broken = await invoke(qa["run_build"], path=str(app))
    assert not broken.ok and "mod.py" in broken.text and "SyntaxError" in broken.text


# ---- npm, cargo, go ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_npm_scripts_are_detected(qa: dict[str, ToolSpec], workspace: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    npm = os.path.abspath(npm)
    scripts = {"test": "x", "lint": "x", "format": "x", "format:check": "x", "build": "x", "type-check": "x"}
    node = project(workspace, "node", {"package.json": json.dumps({"scripts": scripts})})
    assert await argv(qa["run_tests"], path=str(node)) == [npm, "test"]
    assert await argv(qa["run_lint"], path=str(node)) == [npm, "run", "lint"]
    assert await argv(qa["run_format"], path=str(node)) == [npm, "run", "format:check"]
    assert await argv(qa["run_format"], path=str(node), fix=True) == [npm, "run", "format"]
    assert await argv(qa["run_build"], path=str(node)) == [npm, "run", "build"]
    assert await argv(qa["run_typecheck"], path=str(node)) == [npm, "run", "type-check"]
    with pytest.raises(ModelFacingError, match="npm runs the whole suite here and takes no target"):
        await argv(qa["run_tests"], path=str(node), target="src/app.test.js")

    fmt_only = project(workspace, "fmt", {"package.json": json.dumps({"scripts": {"format": "prettier -w ."}})})
    plan = await plan_of(qa["run_format"], path=str(fmt_only))
    assert plan.detail == f"{npm} run format" and "this may rewrite files" in plan.summary

    ts = project(workspace, "ts", {"package.json": "{}", "tsconfig.json": "{}"})
    tsc = stand_in(ts / "node_modules" / ".bin", "tsc", "exit 0\n")
    assert await argv(qa["run_typecheck"], path=str(ts)) == [str(tsc), "--noEmit"]
    with pytest.raises(ModelFacingError, match=r"no test runner found in .*/ts: looked for pytest"):
        await argv(qa["run_tests"], path=str(ts))


@pytest.mark.asyncio
async def test_cargo_is_detected_and_a_filter_that_matches_nothing_says_so(
    qa: dict[str, ToolSpec], workspace: Path
) -> None:
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("cargo is not installed")
    cargo = os.path.abspath(cargo)
    crate = project(
        workspace,
        "rust",
        {
            "Cargo.toml": '[package]\nname = "x"\nversion = "0.1.0"\nedition = "2021"\n',
            "src/lib.rs": "#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {\n        assert_eq!(1 + 1, 2);\n"
            "    }\n}\n",
        },
    )
    assert await argv(qa["run_tests"], path=str(crate), target="adds") == [cargo, "test", "adds"]
    assert await argv(qa["run_lint"], path=str(crate)) == [cargo, "clippy"]
    assert await argv(qa["run_format"], path=str(crate)) == [cargo, "fmt", "--check"]
    assert await argv(qa["run_format"], path=str(crate), fix=True) == [cargo, "fmt"]
    assert await argv(qa["run_build"], path=str(crate)) == [cargo, "build"]
    assert await argv(qa["run_typecheck"], path=str(crate)) == [cargo, "check"]
    lint_fix = await plan_of(qa["run_lint"], path=str(crate), fix=True)
    assert lint_fix.detail == f"{cargo} clippy" and "fix works with ruff only: cargo only reports" in lint_fix.summary

    nothing = await invoke(qa["run_tests"], path=str(crate), target="nope")
    assert nothing.ok and "running 0 tests" in nothing.text and "hint: no test matched 'nope'" in nothing.text


@pytest.mark.asyncio
async def test_go_not_installed_says_where_it_looked(qa: dict[str, ToolSpec], workspace: Path) -> None:
    if shutil.which("go") is not None:
        pytest.skip("go is installed here")
    go = project(workspace, "go", {"go.mod": "module example.com/x\n", "Makefile": "test:\n\ttrue\n"})
    with pytest.raises(ModelFacingError) as refused:
        await argv(qa["run_tests"], path=str(go))
    assert str(refused.value) == (
        "go is not installed: looked on PATH; also found here: make (pass runner=... to use one)"
    )
    assert (await argv(qa["run_tests"], path=str(go), runner="make"))[1:] == ["test"]
    with pytest.raises(ModelFacingError, match=r"^go is not installed: looked on PATH$"):
        await argv(qa["run_build"], path=str(go))


@pytest.mark.asyncio
async def test_go_runs_as_the_toolchain_would(
    qa: dict[str, ToolSpec], workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_ins = tmp_path / "go-bin"
    go = stand_in(
        stand_ins,
        "go",
        'case "$*" in *"-run TestNope"*) printf "ok  \\texample.com/x\\t0.001s [no tests to run]\\n";;\n'
        '  *) printf "ok  \\texample.com/x\\t0.002s\\n";; esac\n',
    )
    gofmt = stand_in(stand_ins, "gofmt", 'if [ "$1" = -l ]; then echo main.go; fi\n')
    monkeypatch.setenv("PATH", f"{stand_ins}{os.pathsep}{os.environ['PATH']}")
    mod = project(workspace, "gomod", {"go.mod": "module example.com/x\n", "main.go": "package main\n"})

    assert await argv(qa["run_tests"], path=str(mod), target="TestAdd/sub") == [
        str(go), "test", "-run", "TestAdd/sub", "./...",
    ]  # fmt: skip
    assert await argv(qa["run_lint"], path=str(mod)) == [str(go), "vet", "./..."]
    assert await argv(qa["run_typecheck"], path=str(mod)) == [str(go), "vet", "./..."]
    assert await argv(qa["run_build"], path=str(mod)) == [str(go), "build", "./..."]
    assert await argv(qa["run_format"], path=str(mod), fix=True) == [str(gofmt), "-w", "."]
    nothing = await invoke(qa["run_tests"], path=str(mod), target="TestNope")
    assert nothing.ok and "hint: no test matched 'TestNope'" in nothing.text
    assert "hint" not in (await invoke(qa["run_tests"], path=str(mod), target="TestAdd")).text

    listed = await invoke(qa["run_format"], path=str(mod))  # gofmt -l exits 0 and lists what is unformatted
    assert listed.text.startswith(f"$ {gofmt} -l .\n") and not listed.ok and listed.exit_status == 0
    assert "FAILED: 1 file(s) need formatting" in listed.text and "main.go" in listed.text
    assert (await invoke(qa["run_format"], path=str(mod), runner="gofmt", fix=True)).ok


# ---- make, precedence, runners ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_make_is_the_fallback_and_runs(qa: dict[str, ToolSpec], workspace: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    make = os.path.abspath(make)
    makefile = (
        "CC := cc\nX ::= y\n.PHONY: test lint\n\ntest lint: deps\n\t@echo running $@\n\t@test $@ = test\n\n"
        "deps:\n\ttrue\n\nbuild:: deps\n\ttrue\n\nfmt:\n\ttrue\n"
    )
    mk = project(workspace, "mk", {"Makefile": makefile})
    assert await argv(qa["run_tests"], path=str(mk)) == [make, "test"]
    assert await argv(qa["run_build"], path=str(mk)) == [make, "build"]
    fmt = await plan_of(qa["run_format"], path=str(mk))
    assert fmt.detail == f"{make} fmt" and "no check-only make target" in fmt.summary
    with pytest.raises(ModelFacingError, match="no type checker found in"):
        await argv(qa["run_typecheck"], path=str(mk))

    passed = await invoke(qa["run_tests"], path=str(mk))
    assert passed.ok and "running test" in passed.text and "passed: exit status 0" in passed.text
    failed = await invoke(qa["run_lint"], path=str(mk))
    assert not failed.ok and failed.exit_status == 2 and "FAILED: exit status 2" in failed.text

    checks = project(workspace, "mk2", {"GNUmakefile": "format:\n\ttrue\nformat-check:\n\ttrue\n"})
    assert await argv(qa["run_format"], path=str(checks)) == [make, "format-check"]
    assert await argv(qa["run_format"], path=str(checks), fix=True) == [make, "format"]


@pytest.mark.asyncio
async def test_native_runners_come_before_make(qa: dict[str, ToolSpec], workspace: Path) -> None:
    both = python_project(workspace)
    (both / "Makefile").write_text("test:\n\ttrue\n")
    assert await argv(qa["run_tests"], path=str(both)) == [str(both / ".venv" / "bin" / "pytest"), "-q"]
    assert (await argv(qa["run_tests"], path=str(both), runner="make"))[1:] == ["test"]
    with pytest.raises(ModelFacingError) as refused:
        await argv(qa["run_tests"], path=str(both), runner="cargo")
    assert str(refused.value) == f"runner 'cargo' is not set up in {both} for run_tests; found here: pytest, make"
    with pytest.raises(ModelFacingError, match="make runs the whole suite here and takes no target"):
        await argv(qa["run_tests"], path=str(both), runner="make", target="tests/test_mod.py")


# ---- where it runs, what it shows -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_nothing_to_run_or_a_wrong_path_is_refused(
    qa: dict[str, ToolSpec], workspace: Path, tmp_path: Path
) -> None:
    empty = project(workspace, "empty", {"README": "hello\n"})
    with pytest.raises(ModelFacingError) as refused:
        await invoke(qa["run_tests"], path=str(empty))
    assert str(refused.value) == (
        f"no test runner found in {empty}: looked for pytest (a Python project: pyproject.toml, setup.py, "
        'setup.cfg, pytest.ini, tox.ini or requirements.txt), an npm "test" script, go.mod, Cargo.toml and a '
        "Makefile with a test target. If the project is in a subdirectory, list_directory shows it"
    )
    with pytest.raises(ModelFacingError, match=r"no linter found in .*empty: looked for ruff"):
        await invoke(qa["run_lint"], path=str(empty))
    with pytest.raises(ModelFacingError, match="outside the file roots"):
        await invoke(qa["run_tests"], path=str(tmp_path))
    with pytest.raises(ModelFacingError, match=r"README is not a directory: .*list_directory"):
        await invoke(qa["run_lint"], path=str(empty / "README"))
    with pytest.raises(ModelFacingError, match=r"nope does not exist: .*then call run_build again"):
        await invoke(qa["run_build"], path=str(workspace / "nope"))


@pytest.mark.asyncio
async def test_a_timeout_kills_the_run(policy: Policy, workspace: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    slow = project(workspace, "slow", {"Makefile": "test:\n\tsleep 30\n"})
    [run_tests, *_] = qa_tools(policy, timeout=0.5)
    out = await invoke(run_tests, path=str(slow))
    assert not out.ok and "timed out after 0.5 s and was killed" in out.text and out.text.endswith("[timed out]")


@pytest.mark.asyncio
async def test_long_output_keeps_its_end_under_the_cap(workspace: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    small = Policy(PolicyConfig(file_roots=[workspace], output_cap=2000))
    [run_tests, run_lint, *_] = qa_tools(small, timeout=30)
    chatty = project(workspace, "chatty", {"Makefile": "test:\n\t@seq 1 1000\n\nlint:\n\t@seq 1 5000\n"})
    out = await invoke(run_tests, path=str(chatty))
    assert out.ok and len(out.text) <= 2000 and "characters cut" in out.text
    assert out.text.splitlines()[3] == "1" and out.text.endswith("\n999\n1000\n[exit status 0]")
    cut = await invoke(run_lint, path=str(chatty))  # more than 4 × the cap: only the beginning was read
    assert len(cut.text) <= 2000 and "only its beginning was kept" in cut.text


@pytest.mark.asyncio
async def test_the_bots_secrets_stay_out(
    qa: dict[str, ToolSpec], workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-not-for-tests")
    monkeypatch.setenv("QA_VISIBLE", "yes")
    envy = project(workspace, "envy", {"Makefile": "test:\n\t@env\n"})
    out = await invoke(qa["run_tests"], path=str(envy))
    assert "QA_VISIBLE=yes" in out.text and "SLACK_BOT_TOKEN" not in out.text and "xoxb" not in out.text
