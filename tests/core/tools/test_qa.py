"""The QA tools on real projects: what each detects (the exact argv the approver sees), real runs of
pytest, ruff, mypy and make in the project's directory, and the refusals the model reads."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from core.errors import ModelFacingError
from core.events import Risk
from core.policy import Policy
from core.tools.qa import QA_TOOLS, qa_tools
from core.tools.registry import ToolContext, ToolOutput, ToolSpec, canonical_json
from tests.core.tools.conftest import REQUESTER, invoke

BIN = Path(sys.executable).parent


@pytest.fixture
def qa(policy: Policy) -> dict[str, ToolSpec]:
    return {spec.name: spec for spec in qa_tools(policy, timeout=120)}


def python_project(root: Path, *, tools: tuple[str, ...] = ("pytest",), pyproject: str = "") -> Path:
    app = root / "py"
    (app / "tests").mkdir(parents=True)
    (app / "pyproject.toml").write_text(pyproject or '[tool.pytest.ini_options]\npythonpath = ["."]\n')
    (app / "mod.py").write_text("def one() -> int:\n    return 1\n")
    (app / "tests" / "test_mod.py").write_text(
        "from mod import one\n\n\ndef test_ok():\n    assert one() == 1\n\n\ndef test_bad():\n    assert one() == 2\n"
    )
    (app / ".venv" / "bin").mkdir(parents=True)
    for name in tools:
        (app / ".venv" / "bin" / name).symlink_to(BIN / name)
    return app


async def argv(spec: ToolSpec, **args: Any) -> list[str]:
    plan = await spec.make_plan(spec.validate(args))
    return list(json.loads(plan.fingerprint_parts[1]))


def test_the_five_tools_are_exec() -> None:
    assert {"run_tests", "run_lint", "run_format", "run_build", "run_typecheck"} == QA_TOOLS


@pytest.mark.asyncio
async def test_the_plan_shows_the_exact_argv_and_is_reusable(qa: dict[str, ToolSpec], workspace: Path) -> None:
    app = python_project(workspace)
    args = qa["run_tests"].validate({"path": str(app)})
    plan = await qa["run_tests"].make_plan(args)
    pytest_bin = str(app / ".venv" / "bin" / "pytest")
    assert plan.risk is Risk.EXEC and plan.detail_kind == "argv" and plan.reuse
    assert plan.detail == f"{pytest_bin} -q"
    assert plan.fingerprint_parts == (str(app), canonical_json([pytest_bin, "-q"]))
    assert await qa["run_tests"].fresh_parts(args) == plan.fingerprint_parts
    (app / ".venv" / "bin" / "pytest").unlink()  # detection changes: the approval no longer holds
    try:
        changed = await qa["run_tests"].fresh_parts(args)
    except ModelFacingError:
        return  # pytest is not on PATH here: refused, which is as good
    assert changed != plan.fingerprint_parts


@pytest.mark.asyncio
async def test_pytest_runs_and_says_what_failed(qa: dict[str, ToolSpec], workspace: Path) -> None:
    app = python_project(workspace)
    out = await invoke(qa["run_tests"], path=str(app))
    assert isinstance(out, ToolOutput) and not out.ok and out.exit_status == 1
    assert "FAILED: 1 failed, 1 passed" in out.text and "assert 1 == 2" in out.text
    ok = await invoke(qa["run_tests"], path=str(app), target="tests/test_mod.py::test_ok")
    assert ok.ok and "passed: 1 passed" in ok.text
    missing = await invoke(qa["run_tests"], path=str(app), target="tests/test_mod.py::test_nope")
    assert not missing.ok and "no test matched" in missing.text and "search_files" in missing.text


@pytest.mark.asyncio
@pytest.mark.parametrize("target", ["-p evil", "--rootdir=/", "tests/x.py; rm -rf /", "a\nb"])
async def test_a_target_is_never_an_option(qa: dict[str, ToolSpec], workspace: Path, target: str) -> None:
    app = python_project(workspace)
    with pytest.raises(ModelFacingError, match="not a test path"):
        await invoke(qa["run_tests"], path=str(app), target=target)


@pytest.mark.asyncio
async def test_a_missing_test_file_says_how_to_find_it(qa: dict[str, ToolSpec], workspace: Path) -> None:
    app = python_project(workspace)
    with pytest.raises(ModelFacingError, match=r"tests/test_mdo\.py does not exist.*search_files"):
        await invoke(qa["run_tests"], path=str(app), target="tests/test_mdo.py")


@pytest.mark.asyncio
async def test_nothing_to_run_or_a_wrong_path_is_refused(
    qa: dict[str, ToolSpec], workspace: Path, tmp_path: Path
) -> None:
    empty = workspace / "empty"
    empty.mkdir()
    with pytest.raises(ModelFacingError, match=r"no test runner found in .*empty: looked for pytest"):
        await invoke(qa["run_tests"], path=str(empty))
    with pytest.raises(ModelFacingError, match="outside"):
        await invoke(qa["run_tests"], path=str(tmp_path))
    (workspace / "file.txt").write_text("x")
    with pytest.raises(ModelFacingError, match="not a directory"):
        await invoke(qa["run_lint"], path=str(workspace / "file.txt"))
    with pytest.raises(ModelFacingError, match="does not exist"):
        await invoke(qa["run_build"], path=str(workspace / "nope"))


@pytest.mark.asyncio
async def test_the_body_needs_an_approval(qa: dict[str, ToolSpec], workspace: Path) -> None:
    app = python_project(workspace)
    args = qa["run_tests"].validate({"path": str(app)})
    plan = await qa["run_tests"].make_plan(args)
    with pytest.raises(ModelFacingError, match="needs a person's approval"):
        await qa["run_tests"].run(args, ToolContext(request=REQUESTER, plan=plan))


@pytest.mark.asyncio
async def test_ruff_lints_fixes_and_formats(qa: dict[str, ToolSpec], workspace: Path) -> None:
    app = python_project(workspace, tools=("pytest", "ruff"), pyproject="[tool.ruff]\nline-length = 100\n")
    (app / "mod.py").write_text("import os\n\n\ndef one( ) -> int:\n    return 1\n")
    lint = await invoke(qa["run_lint"], path=str(app))
    assert not lint.ok and "F401" in lint.text and "Found 1 error" in lint.text
    assert (await invoke(qa["run_lint"], path=str(app), fix=True)).ok
    assert (await invoke(qa["run_lint"], path=str(app))).ok and "import os" not in (app / "mod.py").read_text()
    check = await invoke(qa["run_format"], path=str(app))
    assert not check.ok and "--check" in check.text and "would be reformatted" in check.text
    assert (await invoke(qa["run_format"], path=str(app), fix=True)).ok
    assert "def one() -> int:" in (app / "mod.py").read_text()


@pytest.mark.asyncio
async def test_mypy_finds_a_type_error(qa: dict[str, ToolSpec], workspace: Path) -> None:
    app = python_project(workspace, tools=("mypy",), pyproject='[tool.mypy]\nfiles = ["mod.py"]\n')
    assert await argv(qa["run_typecheck"], path=str(app)) == [str(app / ".venv" / "bin" / "mypy")]
    (app / "mod.py").write_text("def one() -> int:\n    return 'one'\n")
    bad = await invoke(qa["run_typecheck"], path=str(app))
    assert not bad.ok and "Found 1 error" in bad.text
    (app / "mod.py").write_text("def one() -> int:\n    return 1\n")
    good = await invoke(qa["run_typecheck"], path=str(app))
    assert good.ok and "Success" in good.text


@pytest.mark.asyncio
async def test_other_ecosystems_are_detected(qa: dict[str, ToolSpec], workspace: Path) -> None:
    node = workspace / "node"
    node.mkdir()
    (node / "package.json").write_text(json.dumps({"scripts": {"test": "x", "lint": "x", "build": "x"}}))
    npm = shutil.which("npm")
    if npm is not None:
        assert (await argv(qa["run_tests"], path=str(node)))[1:] == ["test"]
        assert (await argv(qa["run_lint"], path=str(node)))[1:] == ["run", "lint"]
    with pytest.raises(ModelFacingError, match="no type checker found"):
        await argv(qa["run_typecheck"], path=str(node))

    rust = workspace / "rust"
    rust.mkdir()
    (rust / "Cargo.toml").write_text('[package]\nname = "x"\nversion = "0.1.0"\n')
    if shutil.which("cargo") is not None:
        assert (await argv(qa["run_typecheck"], path=str(rust)))[1:] == ["check"]
        assert (await argv(qa["run_format"], path=str(rust)))[1:] == ["fmt", "--check"]
        assert (await argv(qa["run_tests"], path=str(rust), target="parses"))[1:] == ["test", "parses"]

    go = workspace / "go"
    go.mkdir()
    (go / "go.mod").write_text("module x\n")
    if shutil.which("go") is None:
        with pytest.raises(ModelFacingError, match="go is not installed"):
            await argv(qa["run_build"], path=str(go))
    else:
        assert (await argv(qa["run_build"], path=str(go)))[1:] == ["build", "./..."]


@pytest.mark.asyncio
async def test_make_is_the_fallback_and_runs(qa: dict[str, ToolSpec], workspace: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    proj = workspace / "mk"
    proj.mkdir()
    (proj / "Makefile").write_text("test:\n\ttrue\n\nlint:\n\tfalse\n")
    assert (await argv(qa["run_tests"], path=str(proj)))[1:] == ["test"]
    assert (await invoke(qa["run_tests"], path=str(proj))).ok
    assert not (await invoke(qa["run_lint"], path=str(proj))).ok
    both = python_project(workspace)
    (both / "Makefile").write_text("test:\n\ttrue\n")
    assert (await argv(qa["run_tests"], path=str(both)))[-1] == "-q"  # pytest before make
    assert (await argv(qa["run_tests"], path=str(both), runner="make"))[1:] == ["test"]
    with pytest.raises(ModelFacingError, match="runner 'cargo' is not set up"):
        await argv(qa["run_tests"], path=str(both), runner="cargo")
