"""The notebooks execute headless, so they never rot; their committed form carries no outputs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from bot.app import Services
from core.health.notebook import execute_notebook
from tests.core.health.test_daily import seed
from tests.fakes.ollama import FakeOllama, Reply
from tests.support.recording import png_size

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def outputs(nb: Any) -> str:
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", "") or "".join(out.get("data", {}).get("text/plain", "")))
    return "".join(text)


@pytest.mark.parametrize("name", ["daily_analysis.ipynb", "agent_console.ipynb"])
def test_committed_notebooks_have_parameters_and_no_outputs(name: str) -> None:
    nb = json.loads((NOTEBOOKS / name).read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert any("parameters" in c["metadata"].get("tags", []) for c in code)
    assert all(not c["outputs"] and c["execution_count"] is None for c in code), "strip the outputs"


@pytest.mark.asyncio
async def test_daily_analysis_notebook_executes(services: Services, tmp_path: Path) -> None:
    end = time.time()
    await seed(services, end=end, minutes=720)
    png, figures = tmp_path / "out" / "chart.png", tmp_path / "out" / "figures.json"
    params = {"window_hours": 12.0, "end": end, "host": "", "db_url": services.store.url,
              "output_png": str(png), "output_json": str(figures)}  # fmt: skip
    nb = execute_notebook(NOTEBOOKS / "daily_analysis.ipynb", params, cwd=tmp_path)
    assert png_size(png) == (1100, 900)
    assert json.loads(figures.read_text())["samples"] == 73
    text = outputs(nb)
    assert "box: 73 samples, 1 incidents, 4 audit rows over 12.0 h" in text
    assert "ffmpeg" in text  # the "dig further" cells ran too


def test_agent_console_notebook_asks_and_browses(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    fake_ollama.script(
        Reply(thinking="Check the disks first.", tool_calls=[{"name": "disk_usage", "arguments": {}}]),
        Reply(content="The root filesystem has plenty of room."),
    )
    params = {"question": "How full are the disks?", "data_dir": str(tmp_path / "data"),
              "ollama_host": fake_ollama.url, "approve_risky": False}  # fmt: skip
    nb = execute_notebook(NOTEBOOKS / "agent_console.ipynb", params, cwd=tmp_path)
    text = outputs(nb)
    assert "The root filesystem has plenty of room." in text
    assert "🔧 `disk_usage()`" in text  # the run as the thread shows it
    assert "ToolResult" in text and "Answer" in text  # its steps from the store
    assert "tool_run" in text and "request" in text  # the audit log
    assert len(fake_ollama.chat_requests) == 2
