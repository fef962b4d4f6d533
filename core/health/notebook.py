"""Run a parameterised notebook headless (papermill-style, on nbclient), synchronously.

The cell tagged `parameters` holds the defaults; a cell tagged `injected-parameters` with
the caller's values is inserted after it, as papermill does, so the executed copy shows
exactly what ran. The kernel gets the environment minus anything that looks like a secret.
nbformat, nbclient and jupyter_client are imported by the first notebook run, not with this module.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.errors import RuntimeFailure
from core.tools.command import scrubbed_env


class NotebookError(RuntimeFailure):
    """The notebook could not run or one of its cells raised; the message names the cell's error."""


def parameters_source(parameters: Mapping[str, Any]) -> str:
    lines = ["# Parameters"]
    lines += [f"{name} = {value!r}" for name, value in parameters.items()]
    return "\n".join(lines) + "\n"


def inject_parameters(nb: Any, parameters: Mapping[str, Any]) -> Any:
    import nbformat

    cell = nbformat.v4.new_code_cell(source=parameters_source(parameters))  # type: ignore[no-untyped-call]
    cell.metadata["tags"] = ["injected-parameters"]
    index = next(
        (i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])),
        -1,
    )
    nb.cells.insert(index + 1, cell)
    return nb


def execute_notebook(
    path: str | Path,
    parameters: Mapping[str, Any],
    *,
    cwd: str | Path | None = None,
    timeout: float = 300.0,
    kernel_name: str = "python3",
    save_to: str | Path | None = None,
    saved_parameters: Mapping[str, Any] | None = None,
) -> Any:
    """Execute and return the notebook node. `save_to` keeps the executed copy; `saved_parameters`
    replaces values in that copy (a database URL's password, for example)."""
    import nbformat
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    nb = inject_parameters(nbformat.read(str(path), as_version=4), parameters)  # type: ignore[no-untyped-call]
    workdir = str(cwd or Path(path).parent)
    try:
        # Unix sockets in a private directory rather than TCP ports on localhost: only we can talk to the kernel.
        with tempfile.TemporaryDirectory(prefix="orch-nb-") as sockets:
            km = AsyncKernelManager(kernel_name=kernel_name, transport="ipc", ip=str(Path(sockets) / "k"))
            client = NotebookClient(
                nb, km=km, timeout=int(timeout), kernel_name=kernel_name, resources={"metadata": {"path": workdir}}
            )
            client.execute(env=scrubbed_env(), cleanup_kc=True)  # we made the manager: shut its kernel down
    except Exception as exc:
        raise NotebookError(_describe(exc)) from exc
    finally:
        if save_to is not None:
            shown = dict(parameters) | dict(saved_parameters or {})
            for cell in nb.cells:
                if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
                    cell.source = parameters_source(shown)
            Path(save_to).parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, str(save_to))  # type: ignore[no-untyped-call]
    return nb


def _describe(exc: Exception) -> str:
    name = getattr(exc, "ename", "") or type(exc).__name__
    value = getattr(exc, "evalue", "") or str(exc).strip().splitlines()[-1:] or [""]
    text = value if isinstance(value, str) else value[0]
    return f"{name}: {text}"[:300]
