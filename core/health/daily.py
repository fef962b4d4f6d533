"""The daily analysis: run the notebook headless, ask the model for a summary, return a Report.

The notebook (notebooks/daily_analysis.ipynb) writes the chart and a JSON of figures; the
model only sees those figures (the LLM port directly, no tools). When the model is down the
report still goes out, with the figures and the chart, and says the summary is missing.
When the notebook cannot run, the same analysis runs in-process and the report says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from core.events import Attachment, Report
from core.formats import read_reply
from core.health import texts
from core.health.analysis import run_analysis
from core.health.notebook import execute_notebook
from core.llm import LLM

if TYPE_CHECKING:
    from core.memory.service import MemoryService
    from core.tools.logs import LogReader

log = logging.getLogger(__name__)

REPORT_LOG_GROUPS = 8  # the error and warning patterns the report lists (the model sees the same)

DEFAULT_NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "daily_analysis.ipynb"


def masked_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(database url)"


class DailyAnalysis:
    def __init__(
        self,
        *,
        db_url: str,
        out_dir: Path,
        llm: LLM | None,
        host: str = "",
        notebook: Path | None = DEFAULT_NOTEBOOK,
        window_hours: float = 24.0,
        kernel_timeout: float = 300.0,
        clock: Callable[[], float] = time.time,
        redact: Callable[[str], str] = lambda text: text,
        memory: MemoryService | None = None,
        logs: LogReader | None = None,
    ) -> None:
        self.memory = memory
        self.logs = logs
        self.db_url = db_url
        self.out_dir = out_dir
        self.llm = llm
        self.host = host
        self.notebook = notebook
        self.window_hours = window_hours
        self.kernel_timeout = kernel_timeout
        self.clock = clock
        self.redact = redact

    async def build(self, *, end: float | None = None) -> Report:
        end = self.clock() if end is None else end
        stem = f"daily-{time.strftime('%Y%m%d-%H%M%S', time.localtime(end))}"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        png, figures_path, executed = (self.out_dir / f"{stem}{ext}" for ext in (".png", ".json", ".ipynb"))
        parameters: dict[str, Any] = {
            "window_hours": self.window_hours,
            "end": end,
            "host": self.host,
            "db_url": self.db_url,
            "output_png": str(png),
            "output_json": str(figures_path),
        }
        note = ""
        try:
            if self.notebook is None or not self.notebook.is_file():
                raise FileNotFoundError(f"no notebook at {self.notebook}")
            await asyncio.to_thread(
                execute_notebook, self.notebook, parameters, cwd=self.out_dir, timeout=self.kernel_timeout,
                save_to=executed, saved_parameters={"db_url": masked_url(self.db_url)},
            )  # fmt: skip
            figures: dict[str, Any] = json.loads(figures_path.read_text())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("the daily analysis notebook failed (%s); computing the figures in-process", exc)
            note = texts.NOTEBOOK_FALLBACK.format(error=str(exc)[:200])
            figures = await asyncio.to_thread(
                run_analysis, self.db_url, end=end, hours=self.window_hours, host=self.host, png=png,
                json_path=figures_path,
            )  # fmt: skip
        if self.logs is not None:
            figures["logs"] = await self._log_groups(end)
        recurring = await self._recurring(end)
        if recurring:
            figures["recurring incidents"] = recurring
        summary, error = await self.summarize(figures)
        host = figures.get("host", self.host)
        title = texts.DAILY_TITLE.format(host=host, start=figures["start"], end=figures["end"])
        return Report(
            kind="daily",
            title=title,
            text=texts.daily_text(figures, summary=summary, error=error, note=note)
            + (f"\n\n{recurring}" if recurring else ""),
            attachments=(Attachment(str(png), title=title, mime="image/png"),),
            fields={"figures": figures, "chart": str(png), "figures_path": str(figures_path),
                    "notebook": str(executed) if executed.exists() else "", "summary_missing": summary is None},
        )  # fmt: skip

    async def _log_groups(self, end: float) -> dict[str, Any]:
        """The window's error and warning patterns from the journal and the containers (analyze_logs'
        grouping), redacted; what could not be read is named. Lines are read up to now."""
        assert self.logs is not None
        try:
            groups, notes, read = await self.logs.groups(int(end - self.window_hours * 3600))
        except Exception as exc:  # the report goes out whatever the logs do
            log.warning("reading the logs for the daily report failed: %s", exc)
            groups, notes, read = [], [f"logs: not read: {type(exc).__name__}: {str(exc)[:200]}"], 0
        telling = [g for g in groups if g.level != "info"][:REPORT_LOG_GROUPS]
        return {
            "read": read,
            "notes": [self.redact(n) for n in notes],
            "groups": [
                {
                    "source": g.source,
                    "level": g.level,
                    "count": g.count,
                    "pattern": self.redact(g.pattern),
                    "example": self.redact(g.example),
                }
                for g in telling
            ],
        }

    async def _recurring(self, end: float) -> str:
        """Incidents seen more than once in the window, from memory; empty without memory."""
        if self.memory is None:
            return ""
        from core.memory.incidents import format_incidents
        from core.memory.texts import RECURRING_HEADER

        try:
            since = datetime.fromtimestamp(end - self.window_hours * 3600, tz=UTC)
            found = await self.memory.recurring_incidents(since=since)
            return self.redact(format_incidents(found, header=RECURRING_HEADER))
        except Exception:
            log.exception("recalling recurring incidents failed")
            return ""

    async def summarize(self, figures: dict[str, Any]) -> tuple[str | None, str]:
        """(summary, "") or (None, why it is missing). Never raises for the model's failures."""
        if self.llm is None:
            return None, "no model is configured"
        messages = [
            {"role": "system", "content": texts.DAILY_SYSTEM_PROMPT},
            {"role": "user", "content": json.dumps(figures, ensure_ascii=False, default=str)},
        ]
        try:
            reply = await self.llm.chat(messages, [])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # LLMError above all; the report goes out whatever the model does
            return None, str(exc)[:300]
        content = read_reply(reply).text
        if not content:
            return None, "the model returned an empty reply"
        return self.redact(content), ""
